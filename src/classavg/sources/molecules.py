"""Real molecules shipped with classavg: a small registry of EMDB maps chosen by name.

The maps live in ``classavg/data/`` (package data; EMDB data are CC0, see the README there).
``Simulation(volume="emd-11007")`` and ``classavg simulate --molecule emd-11007`` resolve a
name through :func:`molecule_path`; the voxel size comes from the map header.

- ``emd-11007`` (EMD-11007): an asymmetric membrane protein in a detergent micelle (fuzzy
  micelle density), 64^3 voxels of 3.1275 A.
- ``emd-3488`` (EMD-3488): human haemoglobin, 64 kDa, a pseudo-symmetric tetramer (phase-plate
  data), 64^3 voxels of 1.6406 A.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .._errors import ParameterError

__all__ = ["Molecule", "MOLECULES", "available_molecules", "molecule_path", "get_molecule",
           "is_molecule_name"]


@dataclass(frozen=True)
class Molecule:
    """A shipped map: registry ``name``, data ``file`` name, ``emdb`` entry, ``description``,
    ``voxel_size`` (Angstrom, as in the header) and ``box`` (voxels per side)."""

    name: str
    file: str
    emdb: str
    description: str
    voxel_size: float
    box: int


MOLECULES = {m.name: m for m in (
    Molecule("emd-11007", "emd_11007_64.mrc", "EMD-11007",
             "asymmetric membrane protein in a detergent micelle", 3.1275, 64),
    Molecule("emd-3488", "emd_3488_64.mrc", "EMD-3488",
             "human haemoglobin, pseudo-symmetric tetramer", 1.6406249, 64),
)}


def available_molecules() -> tuple:
    """Names of the shipped molecules, sorted."""
    return tuple(sorted(MOLECULES))


def get_molecule(name) -> Molecule:
    """The registry entry of ``name`` (case-insensitive); ValueError for an unknown name."""
    key = str(name).strip().lower()
    if key not in MOLECULES:
        raise ParameterError(f"molecule must be one of {list(available_molecules())}, got "
                             f"{name!r}")
    return MOLECULES[key]


def is_molecule_name(name) -> bool:
    """True when ``name`` (a string) names a shipped molecule."""
    return isinstance(name, str) and name.strip().lower() in MOLECULES


def molecule_path(name) -> Path:
    """Path of the MRC map of the shipped molecule ``name`` (package data)."""
    mol = get_molecule(name)
    path = Path(str(resources.files("classavg") / "data" / mol.file))
    if not path.is_file():
        raise FileNotFoundError(f"molecule map {str(path)!r} of {mol.name!r} is missing from "
                                "the installation (package data classavg/data/)")
    return path
