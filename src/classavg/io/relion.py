"""RELION particle data sets: :class:`RelionSource` (read) and :func:`save_source` (write).

A RELION particle STAR file (3.0 or 3.1+ layout, detected automatically) plus the MRC stacks
it names becomes an :class:`~classavg.sources.ImageSource` whose images are read lazily, in
batches, through memory maps.  Any image source can be written back as a RELION 3.1 STAR file
and one float32 MRC stack.

Conventions
-----------
Metadata columns are RELION labels without the leading underscore, optics values folded into
every row, origins in Angstrom (RELION 3.0's ``rlnOriginX/Y`` in pixels are converted to
``rlnOriginXAngst/YAngst``).  RELION's origin is the translation that re-centres the particle,
the opposite of classavg's offset: ``rlnOriginXAngst = -offset_x * pixel_size``.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from .._validation import check_bool, check_int
from ..sources.base import ImageSource
from ._errors import DataFileNotFoundError, StackError, StarFileError
from ._optics import complete_optics, optics_groups
from ._paths import resolve_stack_path
from ._summary import _plain, dataset_summary
from .mrc import read_stack_header, read_stack_images, write_stack
from .star import OPTICS_LABELS, parse_image_names, read_particle_star, row_pixel_sizes

__all__ = ["RelionSource", "save_source", "dataset_summary"]

logger = logging.getLogger(__name__)


class RelionSource(ImageSource):
    """Particle images named by a RELION particle STAR file, read lazily from MRC stacks.

    Parameters
    ----------
    star_path : str or os.PathLike
        RELION particle STAR file, 3.0 (single data block) or 3.1+ (``data_optics`` +
        ``data_particles``) layout.
    data_dir : str or os.PathLike, optional
        RELION project directory that stack paths are relative to, when that is neither the
        current directory nor the STAR file's folder.  Stacks are looked for as given, relative
        to the STAR folder, relative to ``data_dir``, then by bare file name in ``data_dir``
        and in the STAR folder.
    dtype : numpy dtype, optional
        float32 (default) or float64.
    validate : bool, optional
        When True (default) every stack is located and its header checked at construction
        (existence, image count against the ``N@`` numbers, square images, one box size).
        When False those checks happen when a stack is first read.  Pixels are always checked
        for NaN/Inf when read.

    Attributes
    ----------
    star_path : pathlib.Path
    star_version : str
        ``"3.1"`` (optics block) or ``"3.0"`` (single block).
    optics : pandas.DataFrame
        One row per optics group (synthesised from distinct optics values for RELION 3.0).
    stack_names : list of str
        The distinct stack paths as written in the STAR file, in order of first appearance.

    Raises
    ------
    DataFileNotFoundError
        The STAR file or a stack is missing (the message lists the paths tried).
    StarFileError
        The STAR file is empty, has no particle block or no ``_rlnImageName`` column, or a
        name or pixel size is malformed.
    StackError
        A stack is unreadable, holds fewer images than referenced, non-square images, or a
        different box size than the others.

    Notes
    -----
    The pixel size comes from ``rlnImagePixelSize`` (3.1), else ``rlnPixelSize``, else
    ``rlnDetectorPixelSize * 10000 / rlnMagnification`` (3.0), else 1.0 with a warning; when
    rows disagree the most common value is used (with a warning).

    ``metadata`` is normalised to the RELION 3.1 form whatever the file's layout: optics
    columns folded into every row, ``rlnOpticsGroup``/``rlnOpticsGroupName``,
    ``rlnImageSize`` and ``rlnImageDimensionality`` present, and RELION 3.0's pixel origins
    ``rlnOriginX/Y`` replaced by ``rlnOriginXAngst/YAngst`` (times the row's pixel size).

    Stack paths are resolved once, relative to the working directory at construction time,
    and images are read through a process-wide cache of memory maps
    (:func:`classavg.io.clear_stack_cache` releases it).  The source pickles (no open files).
    """

    def __init__(self, star_path, *, data_dir=None, dtype=np.float32, validate=True):
        validate = check_bool("validate", validate)
        self.star_path = Path(star_path)
        self.data_dir = None if data_dir is None else Path(data_dir).absolute()
        self._cwd = Path.cwd()  # stacks are found relative to the directory at construction
        self._star_dir = self.star_path.absolute().parent
        if self.data_dir is not None and not self.data_dir.is_dir():
            raise DataFileNotFoundError(f"data_dir {str(self.data_dir)!r} is not a directory")
        table = read_particle_star(self.star_path)
        self.star_version = table.version
        md = table.particles
        self._names = md["rlnImageName"].astype(str).to_numpy(dtype=object)
        _check_rows(md, self._names, self.star_path)
        local, stacks, bare = parse_image_names(self._names, self.star_path)
        codes, uniques = pd.factorize(pd.Series(stacks, dtype=object))
        self._local = local
        self._stack_id = codes.astype(np.int64)
        self._bare = bare
        self.stack_names = [str(u) for u in uniques]
        n_stacks = len(self.stack_names)
        self._max_local = np.full(n_stacks, -1, dtype=np.int64)
        np.maximum.at(self._max_local, self._stack_id, local)
        self._has_bare = np.bincount(self._stack_id, weights=bare, minlength=n_stacks) > 0
        self._paths = [None] * n_stacks
        self._checked = np.zeros(n_stacks, dtype=bool)

        pixel_size, row_pix = self._pixel_size(md)
        md = self._origins_to_angstrom(md, row_pix if row_pix is not None else pixel_size)

        # The box size: from the first stack (always opened), checked against every other.
        first = self._header(0)
        if first.ny != first.nx:
            self._fail_square(0, first)
        self._L = first.ny  # needed by _check before ImageSource.__init__ sets it
        optics = table.optics.copy()
        for col, value in (("rlnImageSize", first.ny), ("rlnImageDimensionality", 2)):
            if col not in optics.columns:
                optics[col] = value
            if col not in md.columns:
                md[col] = value
        self.optics = optics
        super().__init__(n=len(md), L=first.ny, dtype=dtype, pixel_size=pixel_size, metadata=md)
        if "rlnImageSize" in md.columns:
            sizes = md["rlnImageSize"].to_numpy()
            wrong = np.flatnonzero(sizes != self.L)
            if wrong.size:
                r = int(wrong[0])
                raise StackError(
                    f"STAR file {str(self.star_path)!r}: row {r + 1} (rlnImageName "
                    f"{self._names[r]!r}) has rlnImageSize {_plain(sizes[r])} (optics group "
                    f"{_plain(md['rlnOpticsGroup'].iloc[r])}) but stack "
                    f"{str(self._paths[0])!r} holds {self.L}x{self.L} images; expected them "
                    "to agree")
        if validate:
            for sid in range(n_stacks):
                self._check(sid)

    # -- construction helpers -------------------------------------------------------------
    def _first_row(self, sid, mask=None):
        """0-based index of the first STAR row naming stack ``sid`` (and ``mask``)."""
        hit = self._stack_id == sid
        return int(np.flatnonzero(hit if mask is None else hit & mask)[0])

    def _row_of(self, sid, mask=None):
        r = self._first_row(sid, mask)
        return f"row {r + 1} (rlnImageName {self._names[r]!r})"

    def _pixel_size(self, md):
        where = f"STAR file {str(self.star_path)!r}"
        pix = row_pixel_sizes(md)
        if pix is None:
            logger.warning("%s gives no pixel size (rlnImagePixelSize, rlnPixelSize or "
                           "rlnDetectorPixelSize/rlnMagnification); using 1.0 A", self.star_path)
            return 1.0, None
        bad = ~np.isfinite(pix) | (pix <= 0)
        if np.any(bad):
            r = int(np.flatnonzero(bad)[0])
            raise StarFileError(f"{where}: row {r + 1} (rlnImageName {self._names[r]!r}) has "
                                f"pixel size {float(pix[r])} A; expected a positive number "
                                "(rlnImagePixelSize, rlnPixelSize or "
                                "rlnDetectorPixelSize * 1e4 / rlnMagnification)")
        values, counts = np.unique(pix, return_counts=True)
        pixel_size = float(values[np.argmax(counts)])
        if values.max() - values.min() > 1e-4 * pixel_size:
            logger.warning("%s mixes pixel sizes %s A; using the most common, %g A",
                           self.star_path, values.tolist(), pixel_size)
        return pixel_size, pix

    @staticmethod
    def _origins_to_angstrom(md, pix):
        if "rlnOriginX" in md.columns and "rlnOriginXAngst" not in md.columns:
            md = md.copy()
            for ax in ("X", "Y"):
                if f"rlnOrigin{ax}" in md.columns:
                    md[f"rlnOrigin{ax}Angst"] = md[f"rlnOrigin{ax}"].to_numpy(np.float64) * pix
            md = md.drop(columns=[c for c in ("rlnOriginX", "rlnOriginY") if c in md.columns])
        return md

    def _path(self, sid):
        if self._paths[sid] is None:
            name = self.stack_names[sid]
            path, tried = resolve_stack_path(name, self._star_dir, self.data_dir,
                                             self._cwd)
            if path is None:
                raise DataFileNotFoundError(
                    f"STAR file {str(self.star_path)!r}: {self._row_of(sid)} names stack "
                    f"{name!r}, which was not found; tried "
                    + ", ".join(repr(str(t)) for t in tried)
                    + ("" if self.data_dir else " (pass data_dir= the RELION project "
                       "directory, or --data-dir)"))
            self._paths[sid] = path
        return self._paths[sid]

    def _header(self, sid):
        path = self._path(sid)
        try:
            return read_stack_header(path)
        except StackError as exc:
            raise StackError(f"{exc} (named by {self._row_of(sid)} of STAR file "
                             f"{str(self.star_path)!r})") from exc

    def _fail_square(self, sid, hdr):
        raise StackError(f"MRC stack {str(hdr.path)!r} ({self._row_of(sid)} of STAR file "
                         f"{str(self.star_path)!r}) holds non-square {hdr.ny}x{hdr.nx} (rows x "
                         "columns) images; expected square images")

    def _check(self, sid):
        """Check stack ``sid`` once: square, same box size, enough images."""
        if self._checked[sid]:
            return
        hdr = self._header(sid)
        where = f"STAR file {str(self.star_path)!r}"
        if hdr.ny != hdr.nx:
            self._fail_square(sid, hdr)
        if hdr.ny != self._L:
            raise StackError(f"MRC stack {str(hdr.path)!r} ({self._row_of(sid)} of {where}) "
                             f"holds {hdr.ny}x{hdr.nx} images but stack {str(self._paths[0])!r} "
                             f"holds {self._L}x{self._L}; expected one box size for all stacks")
        if self._max_local[sid] >= hdr.n:
            r = self._first_row(sid, self._local >= hdr.n)
            raise StackError(f"{where}: row {r + 1} (rlnImageName {self._names[r]!r}) asks for "
                             f"image {self._local[r] + 1} of MRC stack "
                             f"{str(hdr.path)!r}, which holds {hdr.n} image(s); expected "
                             f"N@stack with 1 <= N <= {hdr.n}")
        if hdr.n != 1 and self._has_bare[sid]:
            raise StackError(f"{where}: {self._row_of(sid, self._bare)} names MRC file "
                             f"{str(hdr.path)!r} without an image number, but it holds {hdr.n} "
                             "images; expected 'N@stack' (a bare name means a single image)")
        self._checked[sid] = True

    # -- ImageSource ----------------------------------------------------------------------
    @property
    def stack_paths(self):
        """Resolved absolute paths of the distinct stacks (list of pathlib.Path)."""
        return [self._path(s) for s in range(len(self.stack_names))]

    def _images(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        sid = self._stack_id[indices]
        order = np.argsort(sid, kind="stable")
        bounds = np.flatnonzero(np.diff(sid[order])) + 1
        groups = np.split(order, bounds) if indices.size else []
        # one stack file: its images are the result (no second copy of the batch)
        out = None if len(groups) == 1 else np.empty((indices.size, self.L, self.L), self.dtype)
        for pos in groups:  # one group per stack file
            s = int(sid[pos[0]])
            self._check(s)
            imgs = read_stack_images(self._paths[s], self._local[indices[pos]], self.dtype)
            finite = np.isfinite(imgs.sum(axis=(1, 2), dtype=np.float64))
            if not finite.all():
                j = int(np.flatnonzero(~finite)[0])
                r = int(indices[pos[j]])
                raise StackError(f"MRC stack {str(self._paths[s])!r}: image "
                                 f"{self._local[r] + 1} (row {r + 1} of STAR file "
                                 f"{str(self.star_path)!r}, rlnImageName {self._names[r]!r}) "
                                 "holds NaN or Inf pixels; expected finite values")
            if out is None:
                return imgs  # pos is 0..k-1 in order (stable sort of equal keys)
            out[pos] = imgs
        return out

    def __repr__(self):
        return (f"RelionSource({str(self.star_path)!r}, n={self.n}, L={self.L}, "
                f"pixel_size={self.pixel_size:g}, RELION {self.star_version})")


#: Numeric labels the CTF is computed from: each must be finite on every row.
_CTF_LABELS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnVoltage",
               "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnPhaseShift",
               "rlnCtfBfactor")


def _check_rows(md, names, star_path):
    """Refuse repeated image names and non-finite CTF values, naming file, row and label."""
    where = f"STAR file {str(star_path)!r}"
    dup = pd.Series(names, dtype=object).duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        value = names[rows[0]]
        same = np.flatnonzero(names == value)[:5] + 1
        raise StarFileError(f"{where}: label _rlnImageName repeats {value!r} on rows "
                            f"{', '.join(map(str, same))} ({int(dup.sum())} rows share a name); "
                            "expected each particle image once")
    for label in _CTF_LABELS:
        if label not in md.columns:
            continue
        values = pd.to_numeric(md[label], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise StarFileError(f"{where}: row {r + 1} (rlnImageName {names[r]!r}), label "
                                f"_{label}: {_plain(md[label].iloc[r])!r}; expected a finite "
                                "number")


# -- writing ------------------------------------------------------------------------------
_RLN = re.compile(r"^rln[A-Z]\w*$")
#: Labels replaced on writing (new image names, Angstrom origins, optics-block pixel size).
_NOT_COPIED = {"rlnImageName", "rlnOriginX", "rlnOriginY", "rlnOriginXAngst", "rlnOriginYAngst",
               "rlnPixelSize", "rlnDetectorPixelSize", "rlnMagnification"}


def _particle_table(src, rel_stack):
    md = src.metadata
    n = src.n
    width = max(6, len(str(n)))
    names = (pd.Series(np.arange(1, n + 1)).astype(str).str.zfill(width) + "@" + rel_stack)
    gid, optics = optics_groups(md, pixel_size=src.pixel_size, L=src.L)
    keep = [c for c in md.columns if isinstance(c, str) and _RLN.match(c)
            and c not in OPTICS_LABELS and c not in _NOT_COPIED]
    dropped = [c for c in md.columns if not (isinstance(c, str) and _RLN.match(c))]
    if dropped:
        logger.info("not writing non-RELION metadata columns %s", dropped)
    cols = {"rlnImageName": names.to_numpy(dtype=object)}
    cols.update({c: md[c].to_numpy() for c in keep})
    cols["rlnOpticsGroup"] = gid
    has_origin = any(c in md.columns for c in ("rlnOriginXAngst", "rlnOriginX"))
    offsets = np.asarray(src.offsets, dtype=np.float64)
    if has_origin or np.any(offsets != 0):
        origin = -offsets * src.pixel_size
        cols["rlnOriginXAngst"] = origin[:, 0]
        cols["rlnOriginYAngst"] = origin[:, 1]
    return pd.DataFrame(cols), optics


def save_source(src, star_path, *, stack_name=None, batch_size=1024, overwrite=False):
    """Write an image source as a RELION 3.1 particle STAR file plus one MRC stack.

    Parameters
    ----------
    src : ImageSource
        The images (n, L, L) and their metadata.
    star_path : str or os.PathLike
        Output STAR file; its folder is created if needed.
    stack_name : str or os.PathLike, optional
        Output stack, relative to the STAR file's folder unless absolute (default: the STAR
        file name with suffix ``.mrcs``).
    batch_size : int, optional
        Images read and written at a time (memory is one batch).
    overwrite : bool, optional
        Replace existing files (default False: raise ``FileExistsError``).

    Returns
    -------
    pathlib.Path
        The STAR file written.

    Notes
    -----
    The STAR file has ``data_optics`` (groups from the distinct optics group name, voltage,
    Cs and amplitude contrast; 300 kV, 2.7 mm and 0.1 when the source has none, so that
    RELION's tools read it: without a defocus this implies no CTF; ``rlnImagePixelSize`` = ``src.pixel_size``, ``rlnImageSize`` =
    L, ``rlnImageDimensionality`` = 2) and ``data_particles`` with ``rlnImageName`` =
    ``N@stack`` relative to the STAR folder, the metadata columns that are RELION labels
    (names ``rln*``; others are not written), ``rlnOpticsGroup`` and, when the source has
    origins or non-zero offsets, ``rlnOriginXAngst/YAngst = -offset * pixel_size``.
    The stack is float32 (mode 2) with ``voxel_size`` = pixel size.  Both files are written
    to temporary names in their folders and renamed when complete (stack first, STAR last);
    on failure the temporaries are removed.
    """
    if not isinstance(src, ImageSource):
        raise TypeError(f"src must be an ImageSource, got {type(src).__name__}")
    batch_size = check_int("batch_size", batch_size, min=1)
    overwrite = check_bool("overwrite", overwrite)
    star_path = Path(star_path).absolute()
    star_dir = star_path.parent
    stack = Path(stack_name) if stack_name is not None else Path(star_path.stem + ".mrcs")
    stack = stack if stack.is_absolute() else star_dir / stack
    if stack == star_path:
        raise ValueError(f"stack_name must differ from the STAR file, got {str(stack_name)!r}")
    if not overwrite:
        for p in (star_path, stack):
            if p.exists():
                raise FileExistsError(f"{str(p)!r} exists; pass overwrite=True to replace it")
    star_dir.mkdir(parents=True, exist_ok=True)
    stack.parent.mkdir(parents=True, exist_ok=True)
    rel = Path(os.path.relpath(stack, star_dir)).as_posix()
    particles, optics = _particle_table(src, rel)
    optics = complete_optics(optics, where=str(star_path))

    tag = uuid.uuid4().hex[:8]
    tmp_stack = stack.parent / f".{stack.name}.{tag}.tmp"
    tmp_star = star_dir / f".{star_path.name}.{tag}.tmp"
    try:
        write_stack(tmp_stack, src.iter_batches(batch_size), n=src.n, L=src.L,
                    pixel_size=src.pixel_size, desc=f"writing {stack.name}")
        starfile.write({"optics": optics, "particles": particles}, tmp_star)
        os.replace(tmp_stack, stack)
        os.replace(tmp_star, star_path)
    except BaseException:
        for tmp in (tmp_stack, tmp_star):
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
        raise
    logger.info("wrote %d images to %s and %s", src.n, stack, star_path)
    return star_path
