"""A bare MRC stack as a particle source (:class:`MrcStackSource`) and the input dispatcher
:func:`load_particles` (``.star``, ``.cs``, ``.mrc``/``.mrcs``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .._errors import ParameterError
from .._validation import check_float
from ..sources.base import ImageSource
from ._errors import DataError, DataFileNotFoundError
from ._optics import optics_groups
from ._stacks import StackSet

__all__ = ["MrcStackSource", "load_particles", "PARTICLE_FORMATS", "UnknownFormatError"]

logger = logging.getLogger(__name__)

#: Accepted particle files by suffix (lower case), with what each is.
PARTICLE_FORMATS = {".star": "RELION particle STAR file",
                    ".cs": "cryoSPARC particle file",
                    ".mrcs": "MRC image stack (pixel size from --angpix or its header)",
                    ".mrc": "MRC image stack (pixel size from --angpix or its header)"}


class UnknownFormatError(DataError):
    """The particle file's suffix names no format classavg reads."""


class MrcStackSource(ImageSource):
    """Every image of one MRC stack, without CTF or pose metadata.

    Parameters
    ----------
    path : str or os.PathLike
        ``.mrcs`` or ``.mrc`` file of square images (a 2D file is one image).
    pixel_size : float, optional
        Pixel size in Angstrom (``--angpix``).  Default: the header's voxel size; a header
        without one (0) is refused.
    dtype : numpy dtype, optional
        float32 (default) or float64.

    Notes
    -----
    ``metadata`` has ``rlnImageName`` = ``N@path`` (path as given) and the optics labels of one
    optics group without voltage or Cs (the stack gives none), so ``particles.star`` can be
    written; CTF-aware steps (phase flip, Wiener averaging) are not available.
    """

    def __init__(self, path, *, pixel_size=None, dtype=np.float32):
        self.input_path = Path(path)
        where = f"MRC stack {str(self.input_path)!r}"
        if not self.input_path.is_file():
            raise DataFileNotFoundError(f"{where} does not exist")
        self.data_dir = None
        stacks = StackSet([str(path)], [0], locate=_absolute, where=where,
                          describe_row=_image_row)
        hdr = stacks.header(0)
        if pixel_size is None:
            if not hdr.voxel_size > 0:
                raise DataError(f"{where} gives no pixel size (header voxel size "
                                f"{hdr.voxel_size:g}); expected --angpix (pixel_size=) in "
                                "Angstrom")
            pixel_size = float(hdr.voxel_size)
        else:
            pixel_size = check_float("pixel_size", pixel_size, min=0.0, min_inclusive=False)
            if hdr.voxel_size > 0 and abs(hdr.voxel_size - pixel_size) > 1e-3 * pixel_size:
                logger.warning("%s: header voxel size %g A differs from the given pixel size "
                               "%g A; using %g A", path, hdr.voxel_size, pixel_size, pixel_size)
        n = hdr.n
        self._stacks = StackSet([str(path)] * n, np.arange(n), locate=_absolute, where=where,
                                describe_row=_image_row)
        self._stacks.header(0)
        width = max(6, len(str(n)))
        md = pd.DataFrame({"rlnImageName": [f"{i + 1:0{width}d}@{path}" for i in range(n)]})
        gid, optics = optics_groups(md, pixel_size=pixel_size, L=hdr.ny)
        for col in optics.columns:
            md[col] = optics[col].iloc[0]
        self.optics = optics
        self.stack_names = self._stacks.names
        super().__init__(n=n, L=hdr.ny, dtype=dtype, pixel_size=pixel_size, metadata=md)

    @property
    def stack_paths(self):
        """The stack's absolute path, as a one-element list."""
        return self._stacks.paths

    def _images(self, indices):
        return self._stacks.read(indices, self.dtype)

    def __repr__(self):
        return (f"MrcStackSource({str(self.input_path)!r}, n={self.n}, L={self.L}, "
                f"pixel_size={self.pixel_size:g})")


def _absolute(name, row):
    return Path(name).absolute()


def _image_row(r):
    return f"image {r + 1}"


def particle_format(path):
    """The suffix of ``path`` if classavg reads it, else raise :class:`UnknownFormatError`."""
    suffix = Path(path).suffix.lower()
    if suffix not in PARTICLE_FORMATS:
        accepted = ", ".join(f"{s} ({d.split(' (')[0]})" for s, d in PARTICLE_FORMATS.items())
        raise UnknownFormatError(f"particle file {str(path)!r}: unknown format "
                                 f"{suffix or '(no suffix)'!r}; expected one of {accepted}")
    return suffix


def load_particles(path, *, data_dir=None, cs_project_dir=None, angpix=None,
                   dtype=np.float32, validate=True):
    """Open a particle file as an image source, by its suffix.

    Parameters
    ----------
    path : str or os.PathLike
        ``.star`` (:class:`~classavg.io.RelionSource`), ``.cs``
        (:class:`~classavg.io.cryosparc.CryosparcSource`), ``.mrcs``/``.mrc``
        (:class:`MrcStackSource`).
    data_dir : path, optional
        RELION project directory (``.star`` only).
    cs_project_dir : path, optional
        cryoSPARC project directory (``.cs`` only).
    angpix : float, optional
        Pixel size in Angstrom: the pixel size of an MRC stack; for ``.star`` and ``.cs``
        files, which carry their own, it must agree with theirs (0.1 %).
    dtype, validate
        As for the sources.

    Raises
    ------
    UnknownFormatError
        Any other suffix (before any file is opened).
    ParameterError
        ``data_dir`` or ``cs_project_dir`` given for a format that does not use it, or
        ``angpix`` disagreeing with the file.
    """
    from .cryosparc import CryosparcSource
    from .relion import RelionSource

    fmt = particle_format(path)
    if angpix is not None:
        angpix = check_float("angpix", angpix, min=0.0, min_inclusive=False)
    if data_dir is not None and fmt != ".star":
        raise ParameterError(f"data_dir (--data-dir) is the RELION project directory of a "
                             f".star file; {str(path)!r} is not one: "
                             + ("give cs_project_dir (--project-dir), the cryoSPARC project "
                                "directory" if fmt == ".cs" else
                                "give none (an MRC stack names its own images)"))
    if cs_project_dir is not None and fmt != ".cs":
        raise ParameterError(f"cs_project_dir (--project-dir) is the cryoSPARC project "
                             f"directory of a .cs file; {str(path)!r} is not one"
                             + (" (use data_dir, --data-dir)" if fmt == ".star" else ""))
    if fmt == ".star":
        src = RelionSource(path, data_dir=data_dir, dtype=dtype, validate=validate)
    elif fmt == ".cs":
        src = CryosparcSource(path, project_dir=cs_project_dir, dtype=dtype, validate=validate)
    else:
        return MrcStackSource(path, pixel_size=angpix, dtype=dtype)
    if angpix is not None and abs(src.pixel_size - angpix) > 1e-3 * angpix:
        raise ParameterError(f"angpix (--angpix) is {angpix:g} A but {PARTICLE_FORMATS[fmt]} "
                             f"{str(path)!r} gives pixel size {src.pixel_size:g} A; expected "
                             "them to agree (--angpix sets the pixel size of MRC stacks)")
    return src
