"""cryoSPARC particle files (``.cs``): :class:`CryosparcSource`.

A cryoSPARC ``.cs`` file is a numpy structured array saved in the ``.npy`` format, one record
per particle (read here with :func:`numpy.load`, ``allow_pickle=False``: nothing in the file
is executed).  The fields used:

=====================  =====================================================================
``blob/path``          MRC stack holding the particle, relative to the cryoSPARC project
                       directory (a leading ``>`` is dropped)
``blob/idx``           0-based image number in that stack
``blob/psize_A``       pixel size (A)
``blob/shape``         image rows, columns (checked against the stack), optional
``ctf/accel_kv``       voltage (kV)                      -> ``rlnVoltage``
``ctf/cs_mm``          spherical aberration (mm)         -> ``rlnSphericalAberration``
``ctf/amp_contrast``   amplitude contrast (fraction)     -> ``rlnAmplitudeContrast``
``ctf/df1_A``          defocus 1 (A)                     -> ``rlnDefocusU``
``ctf/df2_A``          defocus 2 (A)                     -> ``rlnDefocusV``
``ctf/df_angle_rad``   astigmatism angle (rad)           -> ``rlnDefocusAngle`` (degrees)
``ctf/phase_shift_rad`` phase-plate shift (rad), optional -> ``rlnPhaseShift`` (degrees)
``ctf/bfactor``        CTF B-factor (A^2), optional      -> ``rlnCtfBfactor``
``ctf/exp_group_id``   exposure group, optional          -> ``rlnOpticsGroup``
=====================  =====================================================================

The mapping is the one of ``csparc2star`` (pyem) and of RELION's import of cryoSPARC data:
cryoSPARC's defocus 1/2 and angle are RELION's U/V and angle, the angle measured the same way
(from the x axis to the defocus-1 axis), so the CTF evaluated from the metadata is the same.
Either every required CTF field is present or none is (no CTF).  ``location/micrograph_path``
and ``location/center_x_frac``/``center_y_frac`` (with ``location/micrograph_shape``) become
``rlnMicrographName`` and ``rlnCoordinateX/Y`` when present; ``uid`` is kept as the non-RELION
column ``csUid``.  Alignments of earlier jobs (``alignments2D/*``) are not read: the particles
are classified as extracted.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .._validation import check_bool
from ..sources.base import ImageSource
from ._errors import DataError, DataFileNotFoundError
from ._optics import optics_groups
from ._paths import resolve_stack_path
from ._stacks import StackSet

__all__ = ["CryosparcSource", "CryosparcFileError", "read_cs", "CS_REQUIRED", "CS_CTF"]

logger = logging.getLogger(__name__)


class CryosparcFileError(DataError):
    """A cryoSPARC ``.cs`` file is unreadable or lacks a field that is needed."""


#: Fields every particle file must have, with what they are.
CS_REQUIRED = {"blob/path": "the MRC stack of each particle (text)",
               "blob/idx": "the 0-based image number in that stack (integer)",
               "blob/psize_A": "the pixel size in Angstrom (number)"}
#: CTF fields: all of them or none; with the RELION label each becomes and a unit factor.
CS_CTF = {"ctf/accel_kv": ("rlnVoltage", 1.0),
          "ctf/cs_mm": ("rlnSphericalAberration", 1.0),
          "ctf/amp_contrast": ("rlnAmplitudeContrast", 1.0),
          "ctf/df1_A": ("rlnDefocusU", 1.0),
          "ctf/df2_A": ("rlnDefocusV", 1.0),
          "ctf/df_angle_rad": ("rlnDefocusAngle", 180.0 / np.pi)}
_CTF_OPTIONAL = {"ctf/phase_shift_rad": ("rlnPhaseShift", 180.0 / np.pi),
                 "ctf/bfactor": ("rlnCtfBfactor", 1.0)}

_NPY_MAGIC = b"\x93NUMPY"


def read_cs(path):
    """Read a cryoSPARC ``.cs`` file: a 1-D numpy structured array, shape (n,).

    Raises
    ------
    DataFileNotFoundError
        The file does not exist.
    CryosparcFileError
        It is not a numpy structured array of particle records (e.g. a newer compressed
        cryosparc-tools file, or a pickled object array), or holds no records.
    """
    path = Path(path)
    where = f"cryoSPARC file {str(path)!r}"
    if not path.is_file():
        raise DataFileNotFoundError(f"{where} does not exist")
    with open(path, "rb") as fh:
        magic = fh.read(len(_NPY_MAGIC))
    if magic != _NPY_MAGIC:
        raise CryosparcFileError(f"{where} is not a numpy .npy structured array (starts with "
                                 f"{magic!r}); expected a cryoSPARC .cs file (re-save other "
                                 "formats with cryosparc-tools: Dataset.load(p).save(p, "
                                 "format=NUMPY_FORMAT))")
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode=None)
    except ValueError as exc:
        raise CryosparcFileError(f"{where} cannot be read without unpickling ({exc}); expected "
                                 "fixed-width fields (text as bytes)") from exc
    except (OSError, EOFError) as exc:
        raise CryosparcFileError(f"{where} is truncated or corrupt ({exc}); expected a "
                                 "complete .npy structured array") from exc
    if arr.dtype.names is None or arr.ndim != 1:
        raise CryosparcFileError(f"{where} holds a {arr.dtype} array of shape {arr.shape}; "
                                 "expected a 1-D structured array (one record per particle)")
    if arr.size == 0:
        raise CryosparcFileError(f"{where} holds no particles; expected at least one record")
    return arr


def _text(column):
    """Decode a bytes/str field to an object array of str (UTF-8)."""
    col = np.asarray(column)
    if col.dtype.kind == "S":
        return np.array([b.decode("utf-8") for b in col.tolist()], dtype=object)
    if col.dtype.kind == "U":
        return col.astype(object)
    return None


def _metadata(arr, where):
    """The particle table of a ``.cs`` array as RELION labels: (metadata, paths, idx, psize)."""
    names = set(arr.dtype.names)
    for field, what in CS_REQUIRED.items():
        if field not in names:
            raise CryosparcFileError(f"{where} has no field {field!r}; expected {what} "
                                     f"(fields present: {', '.join(sorted(names)[:12])}"
                                     f"{', ...' if len(names) > 12 else ''})")
    paths = _text(arr["blob/path"])
    if paths is None:
        raise CryosparcFileError(f"{where}: field 'blob/path' has dtype {arr['blob/path'].dtype}; "
                                 "expected text (bytes or str)")
    paths = np.array([p[1:] if p.startswith(">") else p for p in paths], dtype=object)
    empty = np.flatnonzero(pd.Series(paths, dtype=object).str.len().to_numpy() == 0)
    if empty.size:
        raise CryosparcFileError(f"{where}: row {empty[0] + 1}, field 'blob/path' is empty; "
                                 "expected the path of an MRC stack")
    idx = np.asarray(arr["blob/idx"])
    if idx.dtype.kind not in "iu" or (idx.size and idx.min() < 0):
        r = 0 if idx.dtype.kind not in "iu" else int(np.flatnonzero(idx < 0)[0])
        raise CryosparcFileError(f"{where}: row {r + 1}, field 'blob/idx' = {idx[r].item()!r} "
                                 f"(dtype {idx.dtype}); expected a 0-based image number >= 0")
    idx = idx.astype(np.int64)

    def number(field):
        v = np.asarray(arr[field])
        if v.ndim != 1 or v.dtype.kind not in "iuf":
            raise CryosparcFileError(f"{where}: field {field!r} has dtype {v.dtype} and shape "
                                     f"{v.shape}; expected one number per particle")
        v = v.astype(np.float64)
        bad = ~np.isfinite(v)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise CryosparcFileError(f"{where}: row {r + 1} (blob/path {paths[r]!r}, blob/idx "
                                     f"{idx[r]}), field {field!r} = {float(v[r])}; expected a "
                                     "finite number")
        return v

    psize = number("blob/psize_A")
    if np.any(psize <= 0):
        r = int(np.flatnonzero(psize <= 0)[0])
        raise CryosparcFileError(f"{where}: row {r + 1}, field 'blob/psize_A' = {psize[r]:g}; "
                                 "expected a positive pixel size in Angstrom")
    md = {"rlnImageName": [f"{i + 1:06d}@{p}" for i, p in zip(idx, paths)]}
    ctf_present = [f for f in CS_CTF if f in names]
    if ctf_present and len(ctf_present) < len(CS_CTF):
        missing = [f for f in CS_CTF if f not in names]
        raise CryosparcFileError(f"{where} has CTF field {ctf_present[0]!r} but no field "
                                 f"{missing[0]!r}; expected all of {', '.join(CS_CTF)} (or none "
                                 "for data without CTF)")
    if ctf_present:
        for field, (label, scale) in {**CS_CTF, **_CTF_OPTIONAL}.items():
            if field in names:
                md[label] = number(field) * scale
        if "ctf/exp_group_id" in names:
            md["rlnOpticsGroup"] = number("ctf/exp_group_id").astype(np.int64)
    if "location/micrograph_path" in names:
        mics = _text(arr["location/micrograph_path"])
        if mics is not None:
            md["rlnMicrographName"] = [m[1:] if m.startswith(">") else m for m in mics]
    if {"location/center_x_frac", "location/center_y_frac",
            "location/micrograph_shape"} <= names:
        shape = np.asarray(arr["location/micrograph_shape"], dtype=np.float64)
        if shape.ndim == 2 and shape.shape[1] == 2:
            md["rlnCoordinateX"] = number("location/center_x_frac") * shape[:, 1]
            md["rlnCoordinateY"] = number("location/center_y_frac") * shape[:, 0]
    if "uid" in names:
        md["csUid"] = np.asarray(arr["uid"]).astype(np.uint64)
    return pd.DataFrame(md), paths, idx, psize


class CryosparcSource(ImageSource):
    """Particle images named by a cryoSPARC ``.cs`` file, read lazily from MRC stacks.

    Parameters
    ----------
    cs_path : str or os.PathLike
        cryoSPARC particle file (``particles.cs``, ``J12_passthrough_particles.cs``, ...).
    project_dir : str or os.PathLike, optional
        The cryoSPARC project directory (``.../CS-myproject``) that ``blob/path`` is relative
        to.  Stacks are looked for as given (relative to the working directory), relative to
        the ``.cs`` file's folder, relative to ``project_dir``, then by bare file name in
        ``project_dir`` and in the ``.cs`` folder (:mod:`classavg.io._paths`).
    dtype : numpy dtype, optional
        float32 (default) or float64.
    validate : bool, optional
        Locate every stack and check its header at construction (default True).

    Attributes
    ----------
    cs_path, input_path : pathlib.Path
        The ``.cs`` file.
    data_dir : pathlib.Path or None
        ``project_dir`` (absolute): the directory the image names of the outputs are
        relative to, as for a RELION project.
    stack_names : list of str
        The distinct ``blob/path`` values (``>`` dropped), in order of first appearance.
    optics : pandas.DataFrame
        RELION optics groups (by exposure group when ``ctf/exp_group_id`` is present, and by
        voltage, Cs and amplitude contrast).

    Notes
    -----
    ``metadata`` holds RELION labels (see the module docstring), with ``rlnImageName`` =
    ``N@blob/path`` (1-based N), so the outputs (``particles.star``) are RELION files whose
    stack paths are relative to the cryoSPARC project directory.  When ``blob/psize_A``
    differs between rows the most common value is used, with a warning.
    """

    def __init__(self, cs_path, *, project_dir=None, dtype=np.float32, validate=True):
        validate = check_bool("validate", validate)
        self.cs_path = self.input_path = Path(cs_path)
        where = f"cryoSPARC file {str(self.cs_path)!r}"
        self.data_dir = None if project_dir is None else Path(project_dir).absolute()
        if self.data_dir is not None and not self.data_dir.is_dir():
            raise DataFileNotFoundError(f"cs_project_dir {str(self.data_dir)!r} (--project-dir) "
                                        "is not a directory")
        self._cwd = Path.cwd()
        self._cs_dir = self.cs_path.absolute().parent
        arr = read_cs(self.cs_path)
        md, paths, idx, psize = _metadata(arr, where)
        key = pd.Series(md["rlnImageName"], dtype=object)
        dup = key.duplicated(keep=False).to_numpy()
        if dup.any():
            rows = np.flatnonzero(dup)[:2] + 1
            raise CryosparcFileError(f"{where}: rows {rows[0]} and {rows[1]} name the same image "
                                     f"(blob/path {paths[rows[0] - 1]!r}, blob/idx "
                                     f"{idx[rows[0] - 1]}); expected each particle image once")
        values, counts = np.unique(psize, return_counts=True)
        pixel_size = float(values[np.argmax(counts)])
        if values.max() - values.min() > 1e-4 * pixel_size:
            logger.warning("%s mixes pixel sizes %s A; using the most common, %g A",
                           self.cs_path, values.tolist(), pixel_size)
        self._paths_col, self._idx_col = paths, idx
        describe = self._describe_row
        self._stacks = StackSet(paths, idx, locate=self._locate, where=where,
                                describe_row=describe)
        self.stack_names = self._stacks.names
        first = self._stacks.header(0)
        L = first.ny
        if "blob/shape" in arr.dtype.names:
            shape = np.asarray(arr["blob/shape"])
            if shape.ndim == 2 and shape.shape[1] == 2:
                wrong = np.flatnonzero((shape[:, 0] != L) | (shape[:, 1] != L))
                if wrong.size:
                    r = int(wrong[0])
                    raise CryosparcFileError(
                        f"{where}: {describe(r)}, field 'blob/shape' = {shape[r].tolist()} but "
                        f"stack {str(first.path)!r} holds {L}x{L} images; expected them to "
                        "agree")
        gid, optics = optics_groups(md, pixel_size=pixel_size, L=L)
        md["rlnOpticsGroup"] = gid
        md["rlnOpticsGroupName"] = optics["rlnOpticsGroupName"].to_numpy()[gid - 1]
        md["rlnImagePixelSize"] = pixel_size
        md["rlnImageSize"] = L
        md["rlnImageDimensionality"] = 2
        self.optics = optics
        super().__init__(n=len(md), L=L, dtype=dtype, pixel_size=pixel_size, metadata=md)
        if validate:
            self._stacks.check_all()

    def _describe_row(self, r):
        return f"row {r + 1} (blob/path {self._paths_col[r]!r}, blob/idx {self._idx_col[r]})"

    def _locate(self, name, row):
        path, tried = resolve_stack_path(name, self._cs_dir, self.data_dir, self._cwd)
        if path is None:
            raise DataFileNotFoundError(
                f"cryoSPARC file {str(self.cs_path)!r}: row {row + 1} (blob/path {name!r}) "
                "names a stack that was not found; tried "
                + ", ".join(repr(str(t)) for t in tried)
                + ("" if self.data_dir else " (pass cs_project_dir= the cryoSPARC project "
                   "directory, or --project-dir)"))
        return path

    @property
    def stack_paths(self):
        """Resolved absolute paths of the distinct stacks (list of pathlib.Path)."""
        return self._stacks.paths

    def _images(self, indices):
        return self._stacks.read(indices, self.dtype)

    def __repr__(self):
        return (f"CryosparcSource({str(self.cs_path)!r}, n={self.n}, L={self.L}, "
                f"pixel_size={self.pixel_size:g})")
