"""Exceptions raised for bad input data (STAR files, MRC stacks) and refused output folders.

Every data class derives from :class:`DataError`, itself a :class:`ValueError`, so callers can
catch all data problems at once.  Missing files additionally derive from
:class:`FileNotFoundError`.  Messages name the file, the row (1-based STAR data row and
``rlnImageName``) or the field, and what was expected.  Both :class:`DataError` and
:class:`OutputError` belong to :class:`classavg._errors.UserInputError`, the family the command
line reports as one line.
"""

from __future__ import annotations

from .._errors import UserInputError

__all__ = ["DataError", "StarFileError", "StackError", "DataFileNotFoundError", "OutputError"]


class DataError(UserInputError, ValueError):
    """Base class of every error caused by bad input data."""


class StarFileError(DataError):
    """A STAR file is empty, malformed, or lacks a block or column that is needed."""


class StackError(DataError):
    """An MRC stack is unreadable, too short, of the wrong shape or holds NaN/Inf pixels."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A STAR file or an image stack it refers to does not exist."""


class OutputError(UserInputError, ValueError):
    """An output folder cannot be used: it holds a finished run (without overwrite) or files
    classavg did not write, the outputs would replace an input, it is a file, or it is not
    writable."""
