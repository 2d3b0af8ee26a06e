"""Finding the image stacks a STAR file refers to.

RELION writes stack paths relative to the project directory (where the job ran), which is often
not the STAR file's folder.  A stack named ``Particles/mic1.mrcs`` is looked for, in order:

1. as given (relative to the current working directory, or absolute);
2. relative to the STAR file's folder;
3. relative to the user's ``data_dir``;
4. the bare file name (``mic1.mrcs``) in ``data_dir``;
5. the bare file name in the STAR file's folder.
"""

from __future__ import annotations

from pathlib import Path

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
    for cand in tried:
        if cand.is_file():
            return cand.resolve(), tried
    return None, tried
