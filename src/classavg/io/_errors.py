"""Exceptions raised for bad input data (STAR files, MRC stacks).

Every class derives from :class:`DataError`, itself a :class:`ValueError`, so callers can catch
all data problems at once.  Missing files additionally derive from :class:`FileNotFoundError`.
Messages name the file, the row (1-based STAR data row and ``rlnImageName``) or the field, and
what was expected.
"""

from __future__ import annotations

__all__ = ["DataError", "StarFileError", "StackError", "DataFileNotFoundError"]


class DataError(ValueError):
    """Base class of every error caused by bad input data."""


class StarFileError(DataError):
    """A STAR file is empty, malformed, or lacks a block or column that is needed."""


class StackError(DataError):
    """An MRC stack is unreadable, too short, of the wrong shape or holds NaN/Inf pixels."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A STAR file or an image stack it refers to does not exist."""
