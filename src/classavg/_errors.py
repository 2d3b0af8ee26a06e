"""The family of errors caused by the user's input, options or environment.

Everything in this family is reported by the command line as one line (no traceback): bad
input files (:class:`classavg.io.DataError`), bad option values (:class:`ParameterError`,
raised by :mod:`classavg._validation`), refused output folders
(:class:`classavg.io.OutputError`) and missing optional dependencies
(:class:`MissingDependencyError`).  Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["UserInputError", "ParameterError", "MissingDependencyError"]


class UserInputError(Exception):
    """Base class of every error caused by the user's input, options or environment."""


class ParameterError(UserInputError, ValueError):
    """An option has a value outside its allowed range or set."""


class MissingDependencyError(UserInputError, ImportError):
    """An optional dependency needed by the requested feature is not installed."""
