"""Output folders: checked before any computation, staged writes, stale-stage clean-up.

Every command that writes files (``classavg run``, ``demo``, ``simulate``) calls
:func:`check_output_dir` before it computes anything, so that a folder it may not use is
refused within seconds instead of after hours of classification.  It refuses, with an
:class:`~classavg.io.OutputError` naming the path:

* an output path that is a file, or a folder that cannot be created or written (probed by
  creating and removing a file);
* an output that would replace one of the command's input files (``classavg run
  particles.star -o .`` would replace ``particles.star``); no command modifies its inputs;
* a folder holding a finished run (its ``run.json``), unless ``overwrite``;
* a file with an output's name that a previous classavg run did not write (even with
  ``overwrite``: classavg only replaces its own files).

A run writes into a hidden staging folder ``.classavg-partial-HOST-PID-TAG`` inside the output
folder and moves the files into place when complete.  A run killed hard (SIGKILL, power loss)
leaves its staging folder behind; the next run in that folder removes it
(:func:`remove_stale_stages`) unless its process is still alive on this host.  SIGTERM is turned
into a normal exit while the outputs are written (:func:`sigterm_exits`), so the staging folder
is removed then too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

from ..sources.chain import resolve_chain
from ._errors import OutputError

__all__ = ["STAGE_PREFIX", "check_output_dir", "previous_outputs", "make_stage",
           "remove_stale_stages", "remove_previous_outputs", "sigterm_exits",
           "os_errors_name", "source_files"]

logger = logging.getLogger(__name__)

#: Name prefix of the staging folders of a run in progress.
STAGE_PREFIX = ".classavg-partial-"
#: A staging folder of another host (or of the old, pid-less naming) is stale after this.
_STALE_SECONDS = {"other_host": 24 * 3600.0, "unknown": 3600.0}


def _show(path):
    return repr(str(path))


def _host():
    return socket.gethostname().replace(os.sep, "_") or "localhost"


def previous_outputs(out, marker="run.json"):
    """The output names written by the finished classavg run in ``out``.

    Parameters
    ----------
    out : pathlib.Path
        Output folder.
    marker : str
        The run record written last by a run (``run.json``).

    Returns
    -------
    set of str or None
        The names listed in the run record (``"outputs"``), or None when ``out`` holds no
        classavg run record (no marker, unreadable, or not written by classavg).  A record of
        an older classavg without the list yields an empty set (its files are then told apart
        by :func:`check_output_dir`'s ``names``).
    """
    path = Path(out) / marker
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or "classavg_version" not in rec:
        return None
    listed = rec.get("outputs")
    if isinstance(listed, list) and all(isinstance(x, str) for x in listed):
        return set(listed) | {marker}
    return set()


def check_output_dir(out_dir, names, *, inputs=(), overwrite=False, marker=None,
                     flag="--overwrite"):
    """Check that a command may write ``names`` into ``out_dir``; create the folder.

    Call it before any computation.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The output folder (created, with its parents, when missing).
    names : sequence of str
        The output files, relative to ``out_dir`` (``"Particles/particles.mrcs"`` allowed).
    inputs : sequence of path, optional
        The command's input files: none of them may be one of the outputs.
    overwrite : bool, optional
        Allow replacing a finished run (``marker`` given) or existing outputs (no marker).
    marker : str, optional
        The file a finished run writes last (``run.json``).  When given, a file with an
        output's name is only replaced if the finished run in the folder wrote it, and stale
        staging folders are removed.  Without it, existing outputs are replaced only with
        ``overwrite``.
    flag : str, optional
        How the user asks to overwrite (named in the messages).

    Returns
    -------
    pathlib.Path
        The output folder.

    Raises
    ------
    OutputError
        The folder is refused (see the module notes); the message names the path.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output folder {_show(out)} is a file; expected a folder (or a "
                          "path that does not exist yet)")
    targets = {name: (out / name) for name in names}
    resolved = {name: Path(os.path.abspath(p)).resolve() for name, p in targets.items()}
    for inp in inputs:
        if inp is None:
            continue
        ip = Path(os.path.abspath(inp)).resolve()
        for name, t in resolved.items():
            if t == ip or (targets[name].exists() and ip.exists()
                           and _same_file(targets[name], ip)):
                raise OutputError(
                    f"output {name!r} in {_show(out)} would replace the input file "
                    f"{_show(inp)}; choose another output folder (no command modifies its "
                    "inputs)")
    if marker is not None:
        previous = previous_outputs(out, marker)
        if previous is not None and not overwrite:
            raise OutputError(f"output folder {_show(out)} already holds a finished run "
                              f"({marker}); pass {flag} to replace it, or choose another folder")
        for name, p in targets.items():
            if not (p.exists() or p.is_symlink()):
                continue
            ours = previous is not None and (not previous or name in previous)
            if p.is_dir() or p.is_symlink() or not ours:
                raise OutputError(
                    f"output folder {_show(out)} holds {name!r}, which no finished classavg "
                    "run there wrote; remove or rename it, or choose another folder (classavg "
                    "replaces only its own outputs)")
    elif not overwrite:
        for name, p in targets.items():
            if p.exists() or p.is_symlink():
                raise OutputError(f"output file {_show(p)} exists; pass {flag} to replace it, "
                                  "or choose another folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {_show(out)}: "
                          f"{exc.strerror or exc}") from exc
    _probe_writable(out)
    for name, p in targets.items():
        if p.parent != out:
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create folder {_show(p.parent)} for output "
                                  f"{name!r}: {exc.strerror or exc}") from exc
            _probe_writable(p.parent)
    if marker is not None:
        remove_stale_stages(out, names)
    return out


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _probe_writable(folder):
    """Create and remove a file in ``folder``: the only reliable test (ACLs, read-only
    mounts, quotas)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".classavg-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"output folder {_show(folder)} is not writable: "
                          f"{exc.strerror or exc}") from exc


def make_stage(out):
    """Create and return a new staging folder inside ``out`` (named by host and process)."""
    stage = Path(out) / f"{STAGE_PREFIX}{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    return stage


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:         # another user's process: alive
        return True
    except OSError:
        return False
    return True


def _looks_like_ours(stage, names):
    """Only files a run stages: output names and save_source's hidden temporaries."""
    allowed = {Path(n).name for n in names}
    try:
        entries = list(stage.iterdir())
    except OSError:
        return False
    return all(e.is_file() and not e.is_symlink()
               and (e.name in allowed or (e.name.startswith(".") and e.name.endswith(".tmp")))
               for e in entries)


def remove_stale_stages(out, names, *, now=None):
    """Remove the staging folders of dead runs in ``out``; return the removed paths.

    A staging folder is removed when it holds nothing but staged outputs (``names``) and its
    run is over: its process no longer exists on this host, or (another host's, or named
    without a process id by an older classavg) it has not changed for a day (an hour).
    """
    now = time.time() if now is None else now
    removed = []
    host = _host()
    for stage in Path(out).glob(STAGE_PREFIX + "*"):
        if not stage.is_dir() or stage.is_symlink() or not _looks_like_ours(stage, names):
            continue
        rest = stage.name[len(STAGE_PREFIX):]
        parts = rest.rsplit("-", 2)
        try:
            age = now - stage.stat().st_mtime
        except OSError:
            continue
        if len(parts) == 3 and parts[1].isdigit():
            if parts[0] == host:
                stale = not _pid_alive(int(parts[1]))
            else:
                stale = age > _STALE_SECONDS["other_host"]
        else:
            stale = age > _STALE_SECONDS["unknown"]
        if stale:
            shutil.rmtree(stage, ignore_errors=True)
            logger.warning("removed %s, left by an interrupted run", stage)
            removed.append(stage)
    return removed


def remove_previous_outputs(out, keep, names, marker="run.json"):
    """Remove the outputs of the finished run in ``out`` that the new run does not replace.

    ``keep`` are the new run's names; only the previous run's own files (listed in its record,
    else those of ``names``) are removed, the marker first.
    """
    out = Path(out)
    previous = previous_outputs(out, marker)
    if previous is None:
        return []
    old = previous or set(names) | {marker}
    removed = []
    for name in [marker] + sorted(old - {marker}):
        p = out / name
        if name in keep and name != marker:
            continue
        if p.is_file() and not p.is_symlink():
            p.unlink()
            removed.append(p)
    return removed


@contextlib.contextmanager
def sigterm_exits():
    """Turn SIGTERM into ``SystemExit(143)`` inside the block (main thread only), so that
    ``finally`` clauses run (staging folders are removed) instead of the process dying."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, _exit)
    except (ValueError, OSError):   # pragma: no cover - no signals here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def os_errors_name(path, doing="writing into"):
    """Give an OSError raised without a file name (a full disk on ``write``) the ``path``
    being written, so that its one-line message says where."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or isinstance(exc, OutputError):
            raise
        err = OSError(exc.errno, f"{exc.strerror or exc} ({doing} the folder)", str(path))
        raise err from exc


def source_files(src):
    """The input files behind an image source: the STAR (or ``.cs``) file and stacks of the
    source that read them (the root of its chain,
    :func:`classavg.sources.chain.resolve_chain`), as absolute paths."""
    src = resolve_chain(src).root
    files = []
    star = getattr(src, "star_path", None) or getattr(src, "input_path", None)
    if star is not None:
        files.append(Path(star).absolute())
    try:
        files += [Path(p) for p in getattr(src, "stack_paths", None) or ()]
    except (OSError, ValueError):   # an unresolvable stack is reported when it is read
        pass
    return files
