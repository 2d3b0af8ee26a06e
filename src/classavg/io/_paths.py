"""Finding the image stacks a STAR file refers to.

RELION writes stack paths relative to the project directory (where the job ran), which is often
not the STAR file's folder.  A stack named ``Particles/mic1.mrcs`` is looked for, in order:

1. as given (relative to the current working directory, or absolute);
2. relative to the STAR file's folder;
3. relative to the user's ``data_dir``;
4. the bare file name (``mic1.mrcs``) in ``data_dir``;
5. the bare file name in the STAR file's folder.

The first existing file wins.  When another candidate is a different existing file (a stack of
the same relative name in the working directory and beside the STAR file), a warning names both:
pass ``data_dir`` or run from the RELION project folder to make the choice explicit.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["stack_candidates", "resolve_stack_path"]


def stack_candidates(name, star_dir, data_dir=None, cwd=None):
    """The paths tried for stack ``name``, in order, without duplicates.

    Parameters
    ----------
    name : str
        The stack path as written in ``rlnImageName``.
    star_dir : pathlib.Path
        Folder of the STAR file.
    data_dir : pathlib.Path, optional
        User-given data (project) directory.
    cwd : pathlib.Path, optional
        Directory that "as given" relative paths are relative to (default: the current one).

    Returns
    -------
    list of pathlib.Path
    """
    p = Path(name)
    star_dir = Path(star_dir)
    out = [p if (cwd is None or p.is_absolute()) else Path(cwd) / p]
    if not p.is_absolute():
        out.append(star_dir / p)
        if data_dir is not None:
            out.append(Path(data_dir) / p)
    if data_dir is not None:
        out.append(Path(data_dir) / p.name)
    out.append(star_dir / p.name)
    return list(dict.fromkeys(out))


def resolve_stack_path(name, star_dir, data_dir=None, cwd=None):
    """Return ``(path, tried)``: the first existing candidate (absolute) or None, and the
    candidates tried."""
    tried = stack_candidates(name, star_dir, data_dir, cwd)
    found = [c for c in tried if c.is_file()]
    if not found:
        return None, tried
    first = found[0].resolve()
    others = [c for c in found[1:] if not _same(c, first)]
    if others:
        logger.warning("stack %r resolves to more than one file: using %s (the first of: as "
                       "given, relative to the STAR folder, to data_dir, bare name in "
                       "data_dir, in the STAR folder), not %s", name, first,
                       ", ".join(str(o.resolve()) for o in others))
    return first, tried


def _same(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
