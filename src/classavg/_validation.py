"""Parameter validation shared by every public constructor.

All messages follow one style: ``"<name> must be <expectation>, got <value!r>"``, so that a user
sees at once which option is wrong, what it was and what was expected (as scikit-learn does).
"""

from __future__ import annotations

import numbers

import numpy as np

from ._errors import ParameterError

__all__ = [
    "check_int",
    "check_float",
    "check_choice",
    "check_bool",
    "check_random_state",
]


def _fail(name, expectation, value, exc=ValueError):
    # A bad value is the user's (ParameterError: one line on the command line); a bad type is
    # a programming error (plain TypeError: keeps its traceback).
    exc = ParameterError if exc is ValueError else exc
    raise exc(f"{name} must be {expectation}, got {value!r}")


def check_int(name, value, *, min=None, max=None, allow_none=False):
    """Return ``value`` as ``int`` after checking type and bounds (inclusive)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(name, "an integer" + (" or None" if allow_none else ""), value, TypeError)
    value = int(value)
    if min is not None and value < min:
        _fail(name, f"an integer >= {min}", value)
    if max is not None and value > max:
        _fail(name, f"an integer <= {max}", value)
    return value


def check_float(name, value, *, min=None, max=None, min_inclusive=True, allow_none=False):
    """Return ``value`` as ``float`` after checking it is finite and within bounds."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(name, "a real number" + (" or None" if allow_none else ""), value, TypeError)
    value = float(value)
    if not np.isfinite(value):
        _fail(name, "a finite number", value)
    if min is not None:
        if min_inclusive and value < min:
            _fail(name, f"a number >= {min}", value)
        if not min_inclusive and value <= min:
            _fail(name, f"a number > {min}", value)
    if max is not None and value > max:
        _fail(name, f"a number <= {max}", value)
    return value


def check_choice(name, value, choices):
    """Check that ``value`` is one of ``choices``."""
    if value not in choices:
        _fail(name, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def check_bool(name, value):
    """Check that ``value`` is a bool."""
    if not isinstance(value, (bool, np.bool_)):
        _fail(name, "True or False", value, TypeError)
    return bool(value)


def check_random_state(seed, name="seed"):
    """Turn ``seed`` (None, int or Generator) into a ``numpy.random.Generator``."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        _fail(name, "None, a non-negative integer or a numpy Generator", seed, TypeError)
    return np.random.default_rng(int(seed))
