"""Reading and writing particle data: RELION STAR files and MRC stacks.

Main entry points: :class:`RelionSource` (a lazy, memory-mapped image source over a RELION
particle STAR file, 3.0 or 3.1+ layout), :func:`save_source` (write any image source as a
RELION 3.1 STAR file plus an MRC stack) and :func:`dataset_summary`.  Every bad-input error
derives from :class:`DataError` (a ``ValueError``).
"""

from ._errors import DataError, DataFileNotFoundError, OutputError, StackError, StarFileError
from .mrc import clear_stack_cache, read_stack_header, read_stack_images, write_stack
from .relion import RelionSource, dataset_summary, save_source
from .star import parse_image_names, read_particle_star, read_star

__all__ = [
    "RelionSource",
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
