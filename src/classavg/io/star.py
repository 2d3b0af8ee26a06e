"""Reading RELION particle STAR files (RELION 3.0 and 3.1+ layouts, detected automatically).

RELION 3.1 and later write two blocks: ``data_optics`` (one row per optics group) and
``data_particles`` (one row per particle, with ``_rlnOpticsGroup``).  RELION 3.0 writes a
single data block with the optics columns (voltage, Cs, amplitude contrast, magnification and
detector pixel size) on every row and ``_rlnOriginX/Y`` in pixels.  :func:`read_particle_star`
reads both into the same form: a particle table with the optics columns folded into each row,
plus an optics table (synthesised from the distinct optics values for RELION 3.0 files).

Column names are RELION labels without the leading underscore (as the ``starfile`` package
returns them).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from ._errors import DataFileNotFoundError, StarFileError

__all__ = ["ParticleStar", "read_star", "read_particle_star", "parse_image_names",
           "row_pixel_sizes", "OPTICS_LABELS"]

logger = logging.getLogger(__name__)

#: Labels that belong to the ``data_optics`` block of a RELION 3.1+ particle file.
OPTICS_LABELS = (
    "rlnOpticsGroup", "rlnOpticsGroupName", "rlnVoltage", "rlnSphericalAberration",
    "rlnAmplitudeContrast", "rlnImagePixelSize", "rlnImageSize", "rlnImageDimensionality",
    "rlnCtfDataAreCtfPremultiplied", "rlnMicrographOriginalPixelSize", "rlnMicrographPixelSize",
    "rlnBeamTiltX", "rlnBeamTiltY", "rlnMtfFileName", "rlnOddZernike", "rlnEvenZernike",
    "rlnMagMat00", "rlnMagMat01", "rlnMagMat10", "rlnMagMat11",
)

#: Optics values that identify an optics group when one has to be synthesised (RELION 3.0).
_OPTICS_KEYS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")


@dataclass
class ParticleStar:
    """A particle STAR file read into memory.

    Attributes
    ----------
    path : pathlib.Path
        The STAR file.
    particles : pandas.DataFrame
        One row per particle, in file order; optics columns folded into every row.
    optics : pandas.DataFrame
        One row per optics group (``rlnOpticsGroup``, ``rlnOpticsGroupName``, ...).  For a
        RELION 3.0 file it is built from the distinct (voltage, Cs, amplitude contrast, pixel
        size) values, and ``rlnOpticsGroup``/``rlnOpticsGroupName`` are added to the particles.
    version : str
        ``"3.1"`` when the file has a ``data_optics`` block, else ``"3.0"``.
    block : str
        Name of the particle block (``"particles"``, or ``""`` for RELION 3.0's ``data_``).
    """

    path: Path
    particles: pd.DataFrame
    optics: pd.DataFrame
    version: str
    block: str


def _show(value):
    """A table value for messages: numpy scalars as plain Python values."""
    return value.item() if isinstance(value, np.generic) else value


def read_star(path) -> dict:
    """Read every data block of a STAR file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict of str -> pandas.DataFrame
        Block name (without ``data_``) to table; single-row (non-loop) blocks become one-row
        tables.  Empty for an empty file.

    Raises
    ------
    DataFileNotFoundError
        The file does not exist.
    StarFileError
        The file cannot be parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(f"STAR file {str(path)!r} does not exist"
                                    + (" (it is a directory)" if path.is_dir() else ""))
    _check_text(path)
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile/pandas raise many types on malformed input
        raise StarFileError(f"cannot parse STAR file {str(path)!r}: {exc}") from exc
    out = {}
    for name, block in (blocks or {}).items():
        if isinstance(block, dict):
            block = pd.DataFrame([block])
        out[name] = block.reset_index(drop=True)
    return out


_LABEL_OR_BLOCK = re.compile(rb"^[ \t]*(data_\S*|_[A-Za-z]\w*)", re.MULTILINE)


def _check_text(path):
    """Refuse binary files and duplicated labels before parsing (starfile accepts both:
    junk reads as an empty file, a repeated label as a second column of the same name)."""
    with open(path, "rb") as f:
        raw = f.read()
    head = raw[:1 << 16]
    try:
        if b"\0" in head:
            raise UnicodeDecodeError("utf-8", head, 0, 1, "NUL byte")
        head.decode("utf-8") if len(raw) <= len(head) else raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StarFileError(f"STAR file {str(path)!r} is not a text STAR file (binary bytes "
                            f"at offset {exc.start}); expected RELION STAR text "
                            "(data_ blocks, loop_, _rln labels)") from None
    block, seen = "", set()
    for m in _LABEL_OR_BLOCK.finditer(raw):
        token = m.group(1).decode("utf-8")
        if token.startswith("data_"):
            block, seen = token, set()
        elif token in seen:
            raise StarFileError(f"STAR file {str(path)!r}: block {block or 'data_'} lists label "
                                f"{token} more than once; expected each label once per block")
        else:
            seen.add(token)


def _select_particle_block(blocks, path):
    where = f"STAR file {str(path)!r}"
    expected = ("expected a particle block (data_particles, or data_ for RELION 3.0) with an "
                "_rlnImageName column")
    if not blocks:
        raise StarFileError(f"{where} is empty (no data blocks); {expected}")
    if "particles" in blocks:
        name = "particles"
    else:
        with_names = [k for k, v in blocks.items() if k != "optics" and "rlnImageName" in v]
        others = [k for k in blocks if k != "optics"]
        if with_names:
            name = with_names[0]
        elif others:
            name = others[0]
        else:
            raise StarFileError(f"{where} has no particle block (only data_optics); {expected}")
    table = blocks[name]
    if "rlnImageName" not in table.columns:
        found = ", ".join("_" + str(c) for c in table.columns) or "none"
        raise StarFileError(f"{where}: block data_{name} has no _rlnImageName column "
                            f"(columns found: {found}); {expected}")
    if len(table) == 0:
        raise StarFileError(f"{where}: block data_{name} has no rows; {expected}")
    return name, table


def _fold_optics(particles, optics, path):
    where = f"STAR file {str(path)!r}"
    if "rlnOpticsGroup" not in optics.columns:
        raise StarFileError(f"{where}: data_optics has no _rlnOpticsGroup column; expected one "
                            "row per optics group numbered by _rlnOpticsGroup")
    if len(optics) == 0:
        raise StarFileError(f"{where}: data_optics has no rows; expected one per optics group")
    groups = pd.Index(optics["rlnOpticsGroup"])
    if not groups.is_unique:
        dup = groups[groups.duplicated()][0]
        raise StarFileError(f"{where}: data_optics lists _rlnOpticsGroup {_show(dup)!r} more than "
                            "once; expected unique group numbers")
    if "rlnOpticsGroup" not in particles.columns:
        if len(optics) > 1:
            raise StarFileError(f"{where}: the particle block has no _rlnOpticsGroup column "
                                f"but data_optics has {len(optics)} groups; expected each "
                                "particle to name its optics group")
        logger.warning("%s: particles have no _rlnOpticsGroup; using the single optics group %r",
                       path, _show(optics["rlnOpticsGroup"].iloc[0]))
        particles = particles.assign(rlnOpticsGroup=optics["rlnOpticsGroup"].iloc[0])
    pos = groups.get_indexer(pd.Index(particles["rlnOpticsGroup"]))
    if np.any(pos < 0):
        row = int(np.flatnonzero(pos < 0)[0])
        raise StarFileError(
            f"{where}: row {row + 1} (rlnImageName {particles['rlnImageName'].iloc[row]!r}) has "
            f"_rlnOpticsGroup {_show(particles['rlnOpticsGroup'].iloc[row])!r}, which data_optics "
            f"does not define; expected one of {[_show(g) for g in groups]}")
    extra = {c: optics[c].to_numpy()[pos] for c in optics.columns if c not in particles.columns}
    if extra:
        particles = pd.concat([particles, pd.DataFrame(extra, index=particles.index)], axis=1)
    return particles


def row_pixel_sizes(table):
    """Per-row image pixel size in Angstrom from RELION labels, or None when none is given.

    Precedence: ``rlnImagePixelSize`` (RELION 3.1), ``rlnPixelSize``, then
    ``rlnDetectorPixelSize * 10000 / rlnMagnification`` (RELION 3.0, detector pixel in um).

    Parameters
    ----------
    table : pandas.DataFrame

    Returns
    -------
    ndarray of float64, shape (len(table),), or None
    """
    if "rlnImagePixelSize" in table.columns:
        return table["rlnImagePixelSize"].to_numpy(dtype=np.float64)
    if "rlnPixelSize" in table.columns:
        return table["rlnPixelSize"].to_numpy(dtype=np.float64)
    if "rlnDetectorPixelSize" in table.columns and "rlnMagnification" in table.columns:
        det = table["rlnDetectorPixelSize"].to_numpy(dtype=np.float64)
        mag = table["rlnMagnification"].to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return det * 1.0e4 / mag
    return None


def _synthesise_optics(particles):
    """Optics groups of a RELION 3.0 table: one per distinct (V, Cs, Q, pixel size)."""
    keys = [c for c in _OPTICS_KEYS if c in particles.columns]
    key_table = particles[keys].copy()
    pix = row_pixel_sizes(particles)
    if pix is not None:
        key_table["rlnImagePixelSize"] = pix
    if key_table.shape[1]:
        gid = key_table.groupby(list(key_table.columns), sort=False, dropna=False).ngroup()
        gid = gid.to_numpy(dtype=np.int64) + 1
    else:
        gid = np.ones(len(particles), dtype=np.int64)
    first = np.unique(gid, return_index=True)[1]
    optics = key_table.iloc[first].reset_index(drop=True)
    optics.insert(0, "rlnOpticsGroupName", [f"opticsGroup{g}" for g in gid[first]])
    optics.insert(0, "rlnOpticsGroup", gid[first])
    new = {"rlnOpticsGroup": gid,
           "rlnOpticsGroupName": optics["rlnOpticsGroupName"].to_numpy()[gid - 1]}
    if pix is not None and "rlnImagePixelSize" not in particles.columns:
        new["rlnImagePixelSize"] = pix
    new = {k: v for k, v in new.items() if k not in particles.columns}
    particles = pd.concat([particles, pd.DataFrame(new, index=particles.index)], axis=1)
    return particles, optics


def read_particle_star(path) -> ParticleStar:
    """Read a RELION particle STAR file, 3.0 or 3.1+ layout (detected from the blocks).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    ParticleStar

    Raises
    ------
    DataFileNotFoundError
        The file does not exist.
    StarFileError
        The file is empty, has no particle block, no ``_rlnImageName`` column, or particles
        refer to optics groups that ``data_optics`` does not define.
    """
    path = Path(path)
    blocks = read_star(path)
    name, particles = _select_particle_block(blocks, path)
    optics = blocks.get("optics")
    if optics is not None:
        particles = _fold_optics(particles, optics, path)
        version = "3.1"
    else:
        particles, optics = _synthesise_optics(particles)
        version = "3.0"
    logger.debug("read %d particles from %s (RELION %s layout, block data_%s)",
                 len(particles), path, version, name)
    return ParticleStar(path=path, particles=particles.reset_index(drop=True),
                        optics=optics.reset_index(drop=True), version=version, block=name)


def parse_image_names(names, star_path=None):
    """Split RELION ``rlnImageName`` values ``"000123@path/stack.mrcs"`` into index and path.

    Parameters
    ----------
    names : sequence of str, length n
        Image names.  A name without ``@`` is a single-image MRC file (image 1).
    star_path : str or os.PathLike, optional
        The STAR file, named in error messages.

    Returns
    -------
    indices : ndarray of int64, shape (n,)
        0-based image index in the stack (RELION's number minus one).
    stacks : ndarray of object (str), shape (n,)
        The stack path as written in the file.
    bare : ndarray of bool, shape (n,)
        True where the name had no ``N@`` prefix.

    Raises
    ------
    StarFileError
        A number is not an integer >= 1, or the path is empty.
    """
    s = pd.Series(names, dtype=object).astype(str).str.strip()
    parts = s.str.partition("@")
    bare = (parts[1] == "").to_numpy()
    prefix = np.where(bare, "1", parts[0].to_numpy(dtype=object))
    stacks = np.where(bare, s.to_numpy(dtype=object), parts[2].str.strip().to_numpy(dtype=object))
    number = pd.to_numeric(pd.Series(prefix, dtype=object), errors="coerce").to_numpy(
        dtype=np.float64)
    where = f"STAR file {str(star_path)!r}: " if star_path is not None else ""
    # Digits only ("1e20" and "1.0e2" are floats to pandas), and few enough for int64.
    digits = pd.Series(prefix, dtype=object).astype(str).str.strip().str.lstrip("+")
    huge = digits.str.fullmatch(r"\d+").to_numpy(dtype=bool) & (digits.str.len() > 12).to_numpy()
    if np.any(huge):
        r = int(np.flatnonzero(huge)[0])
        raise StarFileError(f"{where}row {r + 1}, label _rlnImageName ({s.iloc[r]!r}): image "
                            f"number {prefix[r]!r} is far beyond any stack; expected "
                            "'N@stack.mrcs' with 1 <= N <= the stack's image count")
    bad = ~np.isfinite(number) | (number != np.round(number)) | \
        ~digits.str.fullmatch(r"-?\d+").to_numpy(dtype=bool)
    if np.any(bad):
        r = int(np.flatnonzero(bad)[0])
        raise StarFileError(f"{where}row {r + 1} (rlnImageName {s.iloc[r]!r}): image number "
                            f"{prefix[r]!r} is not an integer (label _rlnImageName); expected "
                            "'N@stack.mrcs' with an integer N >= 1")
    if np.any(number < 1):
        r = int(np.flatnonzero(number < 1)[0])
        raise StarFileError(f"{where}row {r + 1} (rlnImageName {s.iloc[r]!r}): image number "
                            f"{int(number[r])} is < 1; expected N >= 1 (RELION counts from 1)")
    empty = (pd.Series(stacks, dtype=object).str.len() == 0).to_numpy(dtype=bool)
    if np.any(empty):
        r = int(np.flatnonzero(empty)[0])
        raise StarFileError(f"{where}row {r + 1} (rlnImageName {s.iloc[r]!r}): no stack path; "
                            "expected 'N@stack.mrcs'")
    return number.astype(np.int64) - 1, stacks, bare
