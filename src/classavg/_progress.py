"""The one progress-bar helper of classavg.

Every long loop goes through :func:`progress`, so progress bars can be switched off in one
place: ``classavg.set_progress(False)``, the environment variable ``CLASSAVG_PROGRESS=0`` or the
CLI flag ``--no-progress``.  Bars are also off when stderr is not a terminal unless forced on.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

__all__ = ["progress", "set_progress", "progress_enabled"]

# None means "decide from the environment and the terminal at call time".
_ENABLED: bool | None = None


def set_progress(enabled: bool | None) -> None:
    """Switch progress bars on (True), off (False) or back to automatic (None)."""
    global _ENABLED
    _ENABLED = enabled


def progress_enabled() -> bool:
    """Whether :func:`progress` currently shows bars."""
    if _ENABLED is not None:
        return _ENABLED
    env = os.environ.get("CLASSAVG_PROGRESS")
    if env is not None:
        return env.strip().lower() not in ("0", "false", "no", "off", "")
    return sys.stderr.isatty()


def progress(iterable=None, *, total=None, desc=None, unit="it", **kwargs):
    """Wrap ``iterable`` in a tqdm bar when progress is enabled."""
    return tqdm(
        iterable, total=total, desc=desc, unit=unit, disable=not progress_enabled(),
        leave=False, dynamic_ncols=True, **kwargs,
    )
