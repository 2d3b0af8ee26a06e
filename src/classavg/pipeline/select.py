"""Choosing classes of a finished run and writing their particles (``classavg select``).

:func:`select_classes` reads a run folder (``run.json``, ``classes.star``,
``class_table.npz``, ``particles.star``, the two average stacks) and writes, outside it:

``OUTPUT.star``
    RELION 3.1 particle STAR file (the optics block of ``particles.star``, paths valid from the
    run's project directory) with the particles of the chosen classes.  By default these are
    the members behind the chosen averages (what the user judged), each with the class number
    and pose of the chosen class it is nearest to (``k``, or ``K + k`` for a mirrored member:
    the RELION contract of :mod:`classavg.pipeline.outputs`); with ``assigned_only`` the rows
    of ``particles.star`` whose ``rlnClassNumber`` is ``k`` or ``K + k``, unchanged.
``OUTPUT_averages.mrcs`` / ``OUTPUT_averages.star``
    The chosen averages and their mirrors, with the RELION class numbers of the run, and the
    optics block of ``class_averages.star``.

Classes are named by their rank ``k`` in ``1..K`` (``classes.star``, the report, RELION class
``k``); class ``K + k`` of ``particles.star`` is the mirror of ``k`` and always comes with it.
A class list is a text such as ``"1-20,25"``: numbers and ranges separated by commas or
white space (``selected_classes.txt`` of the report uses this form; ``#`` starts a comment).
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from .._errors import ParameterError
from .._validation import check_bool, check_float, check_int
from ..io._errors import DataFileNotFoundError, OutputError, StarFileError
from ..io._outdir import check_output_dir
from ..io.mrc import write_stack
from ._relion import partition_members, project_path, relion_poses, translations_after_mirror

__all__ = ["select_classes", "parse_class_list", "read_class_list", "Selection",
           "RUN_FILES"]

logger = logging.getLogger(__name__)

#: The files of a run folder that :func:`select_classes` reads.
RUN_FILES = ("run.json", "classes.star", "class_table.npz", "particles.star",
             "class_averages.star", "class_averages.mrcs", "class_averages_mirrored.mrcs")

_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")


@dataclass(frozen=True)
class Selection:
    """What :func:`select_classes` wrote.

    Attributes
    ----------
    classes : tuple of int
        The chosen classes (ranks, 1-based, ascending).
    relion_classes : tuple of int
        Their RELION class numbers: ``k`` and ``K + k`` for each chosen ``k``.
    n_particles : int
        Rows written to the particle STAR file.
    particles, averages, averages_stack : pathlib.Path
        The particle STAR file, the averages' STAR file and stack.
    """

    classes: tuple
    relion_classes: tuple
    n_particles: int
    particles: Path
    averages: Path
    averages_stack: Path


def parse_class_list(text, *, where="classes"):
    """Class numbers from a text like ``"1-20,25"``.

    Parameters
    ----------
    text : str
        Numbers and inclusive ranges ``a-b`` separated by commas and/or white space; ``#``
        starts a comment that runs to the end of the line.
    where : str
        What the text is (an option or a file), for the message.

    Returns
    -------
    list of int
        Sorted, without repeats, each >= 1.

    Raises
    ------
    ParameterError
        An item is not a number or a range ``a-b`` with ``1 <= a <= b``.
    """
    if not isinstance(text, str):
        raise ParameterError(f"{where} must be a text like '1-20,25', got {text!r}")
    out = set()
    for line in text.splitlines():
        for item in re.split(r"[,\s]+", line.split("#", 1)[0].strip()):
            if not item:
                continue
            m = _ITEM.match(item)
            a = int(m.group(1)) if m else 0
            b = int(m.group(2)) if m and m.group(2) else a
            if not m or a < 1 or b < a:
                raise ParameterError(f"{where}: {item!r} is not a class number or a range "
                                     "a-b (1 <= a <= b); expected a list like '1-20,25'")
            out.update(range(a, b + 1))
    return sorted(out)


def read_class_list(path):
    """Class numbers from a text file in the :func:`parse_class_list` form."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFileNotFoundError(f"class list file {str(path)!r} does not exist") from None
    except UnicodeDecodeError:
        raise ParameterError(f"class list file {str(path)!r} is not text; expected class "
                             "numbers like '1,3,5-9'") from None
    return parse_class_list(text, where=f"class list file {str(path)!r}")


def _as_list(value, where):
    if value is None:
        return None
    if isinstance(value, str):
        return parse_class_list(value, where=where)
    try:
        return sorted({check_int(where, v, min=1) for v in value})
    except TypeError:
        raise ParameterError(f"{where} must be a text like '1-20,25' or a list of class "
                             f"numbers, got {value!r}") from None


def _read_run(run_dir):
    """The run's tables, every file checked before anything is written."""
    run = Path(run_dir)
    if not run.is_dir():
        raise DataFileNotFoundError(f"run folder {str(run)!r} does not exist or is not a folder")
    for name in RUN_FILES:
        if not (run / name).is_file():
            hint = (" (the input had no rlnImageName: particles can only be selected from a "
                    "run on a STAR file)" if name == "particles.star" else
                    " (written by classavg run; is this a finished run of classavg >= this "
                    "version?)")
            raise DataFileNotFoundError(f"run folder {str(run)!r} has no {name}{hint}")
    try:
        record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise StarFileError(f"{str(run / 'run.json')!r} is not valid JSON: {exc}") from None
    classes = starfile.read(run / "classes.star", always_dict=True).get("classes")
    need = ("classavgRank", "classavgAssigned", "classavgAssignedMirrored")
    if classes is None or any(c not in classes.columns for c in need):
        raise StarFileError(f"{str(run / 'classes.star')!r}: expected a data_classes block "
                            f"with {', '.join('_' + c for c in need)} (a run of an older "
                            "classavg? run it again)")
    K = len(classes)
    if not np.array_equal(classes["classavgRank"].to_numpy(), np.arange(1, K + 1)):
        raise StarFileError(f"{str(run / 'classes.star')!r}: _classavgRank must be 1..{K} in "
                            "order")
    with np.load(run / "class_table.npz", allow_pickle=False) as z:
        table = {k: z[k] for k in z.files}
    blocks = starfile.read(run / "particles.star", always_dict=True)
    if "particles" not in blocks or "rlnClassNumber" not in blocks["particles"].columns:
        raise StarFileError(f"{str(run / 'particles.star')!r}: expected a data_particles "
                            "block with _rlnClassNumber")
    if len(blocks["particles"]) != table["class_indices"].shape[0]:
        raise StarFileError(f"{str(run / 'particles.star')!r} has {len(blocks['particles'])} "
                            f"rows but class_table.npz {table['class_indices'].shape[0]} "
                            "particles; expected the files of one run")
    averages = starfile.read(run / "class_averages.star", always_dict=True)
    if table["selection_indices"].size != K or len(averages.get("particles", ())) != 2 * K:
        raise StarFileError(f"run folder {str(run)!r}: classes.star, class_table.npz and "
                            f"class_averages.star disagree on the number of classes ({K})")
    project = Path(record.get("project_dir") or Path.cwd())
    return classes, table, blocks, averages, project


def _choose(classes, K, *, chosen, exclude, min_population, max_resolution, run,
            kept_only=False):
    keep = np.ones(K, bool) if chosen is None else np.isin(np.arange(1, K + 1), chosen)
    for label, values in (("classes (--classes)", chosen), ("exclude (--exclude)", exclude)):
        bad = [v for v in values or () if v > K]
        if bad:
            raise ParameterError(
                f"{label}: class {bad[0]} is not in run {str(run)!r}, which has classes 1..{K} "
                f"(RELION class {K}+k in particles.star is the mirror of k and comes with it)")
    if exclude:
        keep &= ~np.isin(np.arange(1, K + 1), exclude)
    if min_population is not None:
        pop = (classes["classavgAssigned"] + classes["classavgAssignedMirrored"]).to_numpy()
        keep &= pop >= min_population
    if max_resolution is not None:
        if "classavgResolutionAngst" not in classes.columns:
            raise ParameterError(f"max_resolution (--max-resolution): "
                                 f"{str(run / 'classes.star')!r} has no "
                                 "_classavgResolutionAngst column (written by classavg runs "
                                 "that estimate the resolution of each class)")
        res = pd.to_numeric(classes["classavgResolutionAngst"], errors="coerce").to_numpy()
        keep &= np.isfinite(res) & (res <= max_resolution)
    if kept_only:
        if "classavgKept" not in classes.columns:
            raise ParameterError(f"kept_only (--kept-only): {str(run / 'classes.star')!r} has "
                                 "no _classavgKept column (written by runs that reject junk: "
                                 "preset 1.4.0 and later)")
        keep &= classes["classavgKept"].to_numpy().astype(int) == 1
    if not keep.any():
        raise ParameterError(f"no class of run {str(run)!r} is left by the selection "
                             "(--classes, --exclude, --min-population, --max-resolution, "
                             "--kept-only)")
    return np.flatnonzero(keep) + 1


def _members_rows(table, ranks, K, pixel_size):
    """Rows and new poses of the members behind the chosen averages."""
    sel = table["selection_indices"][ranks - 1]
    members = table["class_indices"][sel]
    row, col = partition_members(members, table["class_distances"][sel], ranks,
                                 table["class_indices"].shape[0])
    p = np.flatnonzero(row >= 0)
    r, c = row[p], col[p]
    mirror = table["class_refl"][sel][r, c]
    shift = table["shifts"][ranks - 1][r, c]
    if "particle_translations" in table:          # centring before the alignment
        shift = shift + translations_after_mirror(table["particle_translations"][p], mirror)
    number, psi, origin = relion_poses(ranks[r], table["rotations"][ranks - 1][r, c], shift,
                                       mirror, K)
    return p, number, psi, origin * pixel_size


def _replace_atomically(writes):
    """Run each ``(final, write(tmp))`` into temporaries, then rename them all."""
    done = []
    try:
        for final, write in writes:
            tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
            done.append((tmp, final))
            write(tmp)
        for tmp, final in done:
            os.replace(tmp, final)
    finally:
        for tmp, _ in done:
            if tmp.exists():
                tmp.unlink()


def select_classes(run_dir, output, *, classes=None, exclude=None, classes_from=None,
                   min_population=None, max_resolution=None, assigned_only=False,
                   kept_only=False, overwrite=False):
    """Write the particles and averages of chosen classes of a finished run.

    Parameters
    ----------
    run_dir : path
        Output folder of ``classavg run`` (never modified).
    output : path
        Particle STAR file to write (``.star``); the averages go beside it as
        ``<stem>_averages.mrcs`` and ``<stem>_averages.star``.  Must lie outside ``run_dir``.
    classes : str or sequence of int, optional
        Classes (ranks ``1..K``) to keep, e.g. ``"1-20,25"`` (default: all).
    exclude : str or sequence of int, optional
        Classes to leave out.
    classes_from : path, optional
        A text file of classes to keep in the same form (the report's
        ``selected_classes.txt``); joined with ``classes``.
    min_population : int, optional
        Keep classes with at least this many assigned particles (``rlnClassNumber`` ``k`` or
        ``K + k``: ``_classavgAssigned + _classavgAssignedMirrored``).
    max_resolution : float, optional
        Keep classes whose ``_classavgResolutionAngst`` (A) is at most this; an error when
        ``classes.star`` has no such column.
    assigned_only : bool, optional
        Write the particles with ``rlnClassNumber`` ``k`` or ``K + k`` (the partition) instead
        of the members behind the chosen averages (default).
    kept_only : bool, optional
        Keep only the classes the run's junk rejection kept (``_classavgKept`` of
        ``classes.star``) and, of their particles, those it kept (``_classavgKept`` of
        ``particles.star``); an error for runs without junk rejection.
    overwrite : bool, optional
        Replace existing output files.

    Returns
    -------
    Selection

    Raises
    ------
    ParameterError, DataFileNotFoundError, StarFileError, OutputError
        Before anything is written: a bad class list or option, a missing or inconsistent run
        file, an output inside the run folder or already existing without ``overwrite``.
    """
    assigned_only = check_bool("assigned_only", assigned_only)
    kept_only = check_bool("kept_only", kept_only)
    overwrite = check_bool("overwrite", overwrite)
    if min_population is not None:
        min_population = check_int("min_population", min_population, min=0)
    max_resolution = check_float("max_resolution", max_resolution, min=0.0,
                                 min_inclusive=False, allow_none=True)
    chosen = _as_list(classes, "classes (--classes)")
    exclude = _as_list(exclude, "exclude (--exclude)")
    if classes_from is not None:
        chosen = sorted(set(chosen or ()) | set(read_class_list(classes_from)))
    run = Path(run_dir)
    out = Path(output)
    if out.suffix != ".star":
        raise ParameterError(f"output must be a .star file, got {str(output)!r}")
    if run.is_dir() and Path(os.path.abspath(out)).resolve().is_relative_to(run.resolve()):
        raise OutputError(f"output {str(out)!r} lies inside the run folder {str(run)!r}; "
                          "choose a path outside it (classavg select never modifies a run)")
    stack = out.with_name(out.stem + "_averages.mrcs")
    avg_star = out.with_name(out.stem + "_averages.star")
    tables, table, blocks, averages, project = _read_run(run)
    K = len(tables)
    ranks = _choose(tables, K, chosen=chosen, exclude=exclude, min_population=min_population,
                    max_resolution=max_resolution, run=run, kept_only=kept_only)
    check_output_dir(out.parent, [p.name for p in (out, stack, avg_star)],
                     inputs=[run / n for n in RUN_FILES], overwrite=overwrite,
                     flag="--overwrite (overwrite=True)")

    relion = np.concatenate([ranks, ranks + K])
    parts = blocks["particles"]
    opt = averages.get("optics")
    if assigned_only:
        rows = np.flatnonzero(np.isin(parts["rlnClassNumber"].to_numpy(), relion))
        chosen_parts = parts.iloc[rows].copy()
    else:
        pixel_size = float(opt["rlnImagePixelSize"].iloc[0])
        rows, number, psi, origin = _members_rows(table, ranks, K, pixel_size)
        chosen_parts = parts.iloc[rows].copy()
        chosen_parts["rlnClassNumber"] = number
        chosen_parts["rlnAnglePsi"] = psi
        chosen_parts["rlnOriginXAngst"] = origin[:, 0]
        chosen_parts["rlnOriginYAngst"] = origin[:, 1]
    if kept_only and "classavgKept" in chosen_parts.columns:
        chosen_parts = chosen_parts[chosen_parts["classavgKept"].to_numpy().astype(int) == 1]
    particle_blocks = dict(blocks)
    particle_blocks["particles"] = chosen_parts.reset_index(drop=True)

    import mrcfile

    with mrcfile.mmap(run / "class_averages.mrcs", mode="r") as a, \
            mrcfile.mmap(run / "class_averages_mirrored.mrcs", mode="r") as b:
        images = np.concatenate([np.asarray(a.data[ranks - 1]),
                                 np.asarray(b.data[ranks - 1])]).astype(np.float32)
    avg = averages["particles"]
    avg = avg.set_index(avg["rlnClassNumber"].to_numpy()).loc[relion].reset_index(drop=True)
    width = max(6, len(str(images.shape[0])))
    name = project_path(stack, project)
    avg["rlnImageName"] = [f"{i:0{width}d}@{name}" for i in range(1, images.shape[0] + 1)]
    L = images.shape[-1]
    pixel = float(opt["rlnImagePixelSize"].iloc[0])
    _replace_atomically([
        (stack, lambda t: write_stack(t, [(np.arange(images.shape[0]), images)],
                                      n=images.shape[0], L=L, pixel_size=pixel,
                                      desc=f"writing {stack.name}")),
        (avg_star, lambda t: starfile.write({"optics": opt, "particles": avg}, t)),
        (out, lambda t: starfile.write(particle_blocks, t)),
    ])
    logger.info("selected classes %s of %s: %d particles (%s) to %s", ranks.tolist(), run,
                len(chosen_parts), "assigned" if assigned_only else "members", out)
    return Selection(classes=tuple(int(r) for r in ranks),
                     relion_classes=tuple(int(r) for r in relion),
                     n_particles=len(chosen_parts), particles=out, averages=avg_star,
                     averages_stack=stack)
