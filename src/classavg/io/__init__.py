"""Reading and writing particle data: RELION STAR files, cryoSPARC ``.cs`` files, MRC stacks.

Main entry points: :func:`load_particles` (any accepted particle file by its suffix: ``.star``,
``.cs``, ``.mrc``/``.mrcs``), :class:`RelionSource` (a lazy, memory-mapped image source over a
RELION particle STAR file, 3.0 or 3.1+ layout), :class:`CryosparcSource` (a cryoSPARC particle
file), :class:`MrcStackSource` (a bare stack), :func:`save_source` (write any image source as a
RELION 3.1 STAR file plus an MRC stack) and :func:`dataset_summary`.  Every bad-input error
derives from :class:`DataError` (a ``ValueError``).
"""

from ._errors import DataError, DataFileNotFoundError, OutputError, StackError, StarFileError
from .mrc import clear_stack_cache, read_stack_header, read_stack_images, write_stack
from .cryosparc import CryosparcFileError, CryosparcSource, read_cs
from .relion import RelionSource, dataset_summary, save_source
from .stack_source import PARTICLE_FORMATS, MrcStackSource, UnknownFormatError, load_particles
from .star import parse_image_names, read_particle_star, read_star

__all__ = [
    "load_particles",
    "PARTICLE_FORMATS",
    "RelionSource",
    "CryosparcSource",
    "MrcStackSource",
    "read_cs",
    "CryosparcFileError",
    "UnknownFormatError",
    "save_source",
    "dataset_summary",
    "DataError",
    "StarFileError",
    "StackError",
    "DataFileNotFoundError",
    "OutputError",
    "read_star",
    "read_particle_star",
    "parse_image_names",
    "read_stack_header",
    "read_stack_images",
    "write_stack",
    "clear_stack_cache",
]
