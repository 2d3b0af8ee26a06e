"""Writing the outputs of a class-averaging run (see docs/outputs.md).

Files in the output folder (``K`` selected classes):

``class_averages.mrcs`` / ``class_averages_mirrored.mrcs`` / ``class_averages.star``
    The ``K`` averages (float32 MRC stack) in selection-rank order, their mirror images
    (``y -> -y``), and a RELION STAR file listing both as RELION classes ``1..2K``: class ``k``
    is average ``k``, class ``K + k`` its mirror (RELION labels only: ``rlnImageName``,
    ``rlnClassNumber``, ``rlnClassDistribution``, ``rlnImageOriginalName`` = the reference
    particle's image; a full optics block).
``classes.star``
    One row per selected class with classavg's own labels: not meant for RELION.  Two counts
    per class: ``_classavgMembers`` (the particles behind the average, ``n_nbor``; of them
    ``_classavgMembersMirrored`` enter it mirrored) and ``_classavgAssigned`` /
    ``_classavgAssignedMirrored`` (the partition: particles with ``rlnClassNumber`` ``k`` /
    ``K + k`` in ``particles.star``); ``_classavgReferenceParticle`` is 1-based (the row of
    ``particles.star``), ``_classavgClassId`` the 0-based row of ``class_table.npz``;
    ``_classavgResolutionAngst`` the half-set FRC resolution of the average (its members,
    0.143 criterion, Angstrom, :mod:`classavg.metrics.resolution`; ``inf`` where the halves
    never correlate, NaN where undefined).
``class_table.npz``
    The full neighbour table of every image (``class_indices``, ``class_refl``,
    ``class_distances``), the selection, the alignment (``rotations`` radians, ``shifts``
    pixels, ``scores``) of the selected classes, the partition (``particle_class_rank``:
    1-based rank or 0, ``particle_class_number``: the RELION class, ``K + k`` when mirrored)
    and ``particle_translations`` (pixels, the centring applied before the alignment);
    read it back with :func:`read_class_table`.
``particles.star``
    The input particles (optics block kept), each given to one class (the
    selected class, among those containing it, whose reference is nearest):
    ``rlnClassNumber`` (``k``, ``K + k`` when it is matched as a mirror image, 0 when in no
    selected class), ``rlnAnglePsi`` and ``rlnOriginXAngst/YAngst``, which bring the particle
    onto the average of its ``rlnClassNumber`` by a shift then an in-plane rotation, as in
    RELION (:mod:`classavg.pipeline._relion`).  With junk rejection (``junk=``, preset
    1.4.0+; :mod:`classavg.selection.junk`) also the scores ``_classavgFitScore``,
    ``_classavgBlobScore``, ``_classavgAmplitude``, ``_classavgExtraDensity``,
    ``_classavgMissingDensity``, ``_classavgMissingFraction`` and the decision
    ``_classavgKept`` (1/0); RELION keeps labels it does not know.
``selected_particles.star`` / ``rejected_particles.star``
    With junk rejection: the rows of ``particles.star`` kept / rejected.  Rejected classes
    are ranked after every kept one (in every file), ``classes.star`` has ``_classavgKept``,
    ``_classavgKeptFraction`` and the medians ``_classavgMedianFitScore`` and
    ``_classavgMedianExtraDensity`` of its assigned particles; ``class_table.npz`` has
    ``particle_kept``, ``class_kept`` and ``particle_<score>_score``.
``run.json``
    Version, preset, parameters, seeds, timings, the project directory: written last.
``report.html``
    A self-contained gallery of the averages.

Stack paths in the STAR files are relative to the project directory (``project_dir``: the
input's ``data_dir``, else the working directory), as RELION writes them, so that RELION's
programs run there read every output.

Everything is first written into a hidden staging folder inside the output folder and moved
into place when complete, ``run.json`` last, so an interrupted run never leaves files that look
finished.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from ..averaging._transform import mirror_images
from ..io._outdir import (check_output_dir, make_stage, os_errors_name,
                          remove_previous_outputs, sigterm_exits, source_files)
from ..io.mrc import write_stack
from ..sources.chain import resolve_chain
from ._junk import (PARTICLE_LABELS, add_junk_columns, junk_arrays,
                    write_junk_particles)
from ._quality import class_resolution
from ._relion import (averages_optics, partition_members, project_image_names, project_path,
                      relion_poses, translations_after_mirror)

__all__ = ["write_outputs", "read_class_table", "particle_partition", "OUTPUT_NAMES",
           "PARTICLE_LABELS"]

#: Every file a run may write into its output folder (``run.json`` last).
OUTPUT_NAMES = ("class_averages.mrcs", "class_averages_mirrored.mrcs", "class_averages.star",
                "classes.star", "class_table.npz", "particles.star",
                "selected_particles.star", "rejected_particles.star", "report.html", "run.json")

logger = logging.getLogger(__name__)


def particle_partition(cas, rotations, shifts):
    """Assign every particle to at most one selected class.

    A particle goes to the selected class, among those listing it, where its feature distance
    to the reference is smallest (ties: the better rank; a reference belongs to its own class).

    Returns
    -------
    rank : ndarray of int, shape (n_particles,)
        1-based rank of the assigned class, 0 for particles in no selected class.
    rotation : ndarray, shape (n_particles,)
        Radians, aligning the particle onto the class reference (0 when unassigned).
    shift : ndarray, shape (n_particles, 2)
        Pixels (x, y), applied before the rotation.
    mirror : ndarray of bool, shape (n_particles,)
        Matched as a mirror image (RELION class ``K + rank``, :func:`relion_poses`).
    """
    sel = cas.selection_indices
    row, col = partition_members(cas.class_indices[sel], cas.class_distances[sel],
                                 np.arange(1, sel.size + 1), cas.src.n)
    n = cas.src.n
    rank = np.zeros(n, np.int64)
    rot = np.zeros(n)
    sh = np.zeros((n, 2))
    mir = np.zeros(n, bool)
    p = np.flatnonzero(row >= 0)
    r, c = row[p], col[p]
    rank[p] = r + 1
    rot[p] = rotations[r, c]
    sh[p] = shifts[r, c]
    mir[p] = cas.class_refl[sel][r, c]
    return rank, rot, sh, mir


def read_class_table(path):
    """Read ``class_table.npz`` back as a dict of arrays."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _root_source(src):
    """The source that read the files (:func:`classavg.sources.chain.resolve_chain`)."""
    return resolve_chain(src).root


def _particles_table(src, number, psi, origin, project_dir):
    """The input particle table (RELION labels) with the partition columns."""
    root = _root_source(src)
    md = root.metadata
    keep = [c for c in md.columns if isinstance(c, str) and c.startswith("rln")]
    parts = md[keep].copy()
    if "rlnImageName" not in parts.columns:
        raise ValueError("particles.star needs the input's rlnImageName: run on a RELION STAR "
                         "file (or save the source first)")
    parts["rlnImageName"] = project_image_names(root, parts["rlnImageName"].astype(str),
                                                project_dir)
    parts["rlnClassNumber"] = number
    parts["rlnAnglePsi"] = psi
    # Shifts are measured on the (possibly downsampled) classified images: Angstrom is
    # invariant, so multiply by that source's pixel size.
    parts["rlnOriginXAngst"] = origin[:, 0] * src.pixel_size
    parts["rlnOriginYAngst"] = origin[:, 1] * src.pixel_size
    parts = parts.drop(columns=["rlnOriginX", "rlnOriginY"], errors="ignore")
    optics = getattr(root, "optics", None)
    if optics is not None and len(optics):
        # Optics values are folded into the particle rows on reading: keep them in the block.
        parts = parts.drop(columns=[c for c in optics.columns
                                    if c in parts.columns and c != "rlnOpticsGroup"])
        return {"optics": optics, "particles": parts}
    return {"particles": parts}


def write_outputs(cas, out_dir, *, record, overwrite=False, report=True, batch_size=256,
                  project_dir=None, junk=None):
    """Write every output of a :class:`ClassAvgSource` into ``out_dir``.

    Parameters
    ----------
    cas : ClassAvgSource
    out_dir : path
        Created if needed; must not already hold a finished run unless ``overwrite``.
    record : dict
        Run record (version, preset, parameters, ...) written to ``run.json``; timings are
        added.
    report : bool
        Also write ``report.html``.
    project_dir : path, optional
        The RELION project directory the STAR files' stack paths are relative to (default:
        the input's ``data_dir``, else the current working directory); recorded in
        ``run.json`` as ``project_dir``.
    junk : dict, optional
        Reject junk with these :class:`~classavg.selection.junk.JunkRejector` options
        (``{}``: the defaults): per-particle scores, kept/rejected classes (rejected ranked
        last), ``selected_particles.star`` and ``rejected_particles.star``.  None (default):
        no rejection, every class kept.

    Returns
    -------
    dict
        Output name -> path.
    """
    # The checks of run_classavg again (a direct caller may not have made them); see
    # classavg.io._outdir for the rules and the staging.
    out = check_output_dir(out_dir, OUTPUT_NAMES, inputs=source_files(cas.src),
                           overwrite=overwrite, marker="run.json", flag="overwrite=True")
    project = _project_dir(cas.src, project_dir)
    with sigterm_exits(), os_errors_name(out):
        stage = make_stage(out)
        try:
            paths = _write_all(cas, stage, record, report, batch_size, project, junk)
            _list_outputs(paths)
            # the old run goes first, its marker first: nothing of it stays beside the new one
            remove_previous_outputs(out, set(paths), OUTPUT_NAMES)
            final = {}
            for name, p in paths.items():
                if name != "run.json":
                    final[name] = out / p.name
                    os.replace(p, final[name])
            final["run.json"] = out / "run.json"
            os.replace(paths["run.json"], final["run.json"])
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    logger.info("wrote %s", ", ".join(str(p) for p in final.values()))
    return final


def _list_outputs(paths):
    """Add the names written to ``run.json``: the next run replaces exactly those."""
    with open(paths["run.json"], encoding="utf-8") as f:
        rec = json.load(f)
    rec["outputs"] = sorted(paths)
    with open(paths["run.json"], "w", encoding="utf-8") as f:
        json.dump(rec, f, indent=2)


def _project_dir(src, project_dir):
    if project_dir is None:
        project_dir = getattr(_root_source(src), "data_dir", None) or Path.cwd()
    project_dir = Path(project_dir).absolute()
    if not project_dir.is_dir():
        raise NotADirectoryError(f"project_dir {str(project_dir)!r} is not a directory")
    return project_dir


def _write_averages(cas, stage, batch_size, junk):
    """The two stacks (the averages, computed lazily batch by batch, and their mirrors) and
    the alignment; with ``junk`` options, the junk decision first and the classes re-ranked
    (kept first; :mod:`classavg.pipeline._junk`).  Returns ``(paths, alignment, junk)``
    with ``junk`` None or ``(scores, decision, record)`` in the new order."""
    import mrcfile

    direct = stage / "class_averages.mrcs"
    first = stage / "_unranked.mrcs" if junk is not None else direct
    write_stack(first, cas.iter_batches(batch_size), n=cas.n, L=cas.L,
                pixel_size=cas.pixel_size, desc="writing class_averages.mrcs")
    rot, sh, sc = cas.alignment()
    result, order = None, np.arange(cas.n)
    with mrcfile.mmap(first, mode="r") as mrc:
        data = mrc.data
        if junk is not None:
            from ._junk import reject_junk

            rank = particle_partition(cas, rot, sh)[0]
            scores, decision, order, rec = reject_junk(cas, data, rot, sh, rank - 1, junk,
                                                       batch_size=max(batch_size, 1024))
            cas.rank_classes(order)
            rot, sh, sc = rot[order], sh[order], sc[order]
            result = (scores, decision, rec)
            write_stack(direct, ((np.arange(a, min(a + batch_size, cas.n)),
                                  np.asarray(data[order[a:a + batch_size]]))
                                 for a in range(0, cas.n, batch_size)),
                        n=cas.n, L=cas.L, pixel_size=cas.pixel_size,
                        desc="ranking class_averages.mrcs")
        batches = ((np.arange(a, min(a + batch_size, cas.n)),
                    mirror_images(np.asarray(data[order[a:a + batch_size]])))
                   for a in range(0, cas.n, batch_size))
        write_stack(stage / "class_averages_mirrored.mrcs", batches, n=cas.n, L=cas.L,
                    pixel_size=cas.pixel_size, desc="writing class_averages_mirrored.mrcs")
    if first != direct:
        first.unlink()
    return (direct, stage / "class_averages_mirrored.mrcs"), (rot, sh, sc), result


def _averages_star(cas, number, project, out, names):
    """class_averages.star: RELION classes 1..2K (K + k: the mirror of k), full optics."""
    K = cas.n
    counts = np.bincount(number, minlength=2 * K + 1)[1:]
    width = max(6, len(str(K)))
    idx = pd.Series(np.arange(1, K + 1)).astype(str).str.zfill(width)
    image = pd.concat([idx + "@" + project_path(out / "class_averages.mrcs", project),
                       idx + "@" + project_path(out / "class_averages_mirrored.mrcs", project)])
    table = pd.DataFrame({"rlnImageName": image.to_numpy(),
                          "rlnClassNumber": np.arange(1, 2 * K + 1),
                          "rlnClassDistribution": counts / max(cas.src.n, 1),
                          "rlnOpticsGroup": 1})
    if names is not None:
        refs = names.to_numpy()[cas.metadata["reference_particle"].to_numpy()]
        table["rlnImageOriginalName"] = np.concatenate([refs, refs])
    optics = averages_optics(_root_source(cas.src), pixel_size=cas.pixel_size, L=cas.L)
    return {"optics": optics, "particles": table}


def _classes_table(cas, number):
    """classes.star: per class the members behind the average and the partition counts."""
    sel = cas.selection_indices
    K = sel.size
    counts = np.bincount(number, minlength=2 * K + 1)
    refl = cas.class_refl[sel]
    md = cas.metadata
    return pd.DataFrame({
        "classavgRank": np.arange(1, K + 1),
        "classavgRelionClass": np.arange(1, K + 1),
        "classavgRelionClassMirrored": np.arange(K + 1, 2 * K + 1),
        "classavgClassId": sel,
        "classavgReferenceParticle": md["reference_particle"].to_numpy() + 1,
        "classavgMembers": np.full(K, cas.n_nbor),
        "classavgMembersMirrored": refl.sum(axis=1).astype(np.int64),
        "classavgAssigned": counts[1:K + 1],
        "classavgAssignedMirrored": counts[K + 1:],
        "classavgScore": md["score"].to_numpy(),
        "classavgMeanDistance": cas.class_distances[sel, 1:].mean(axis=1)
        if cas.n_nbor > 1 else np.zeros(K),
    })


def _write_all(cas, stage, record, report, batch_size, project, junk):
    import time

    t0 = time.perf_counter()
    paths = {}
    src = cas.src
    sel = cas.selection_indices
    K = sel.size
    n_images = src.n
    out = stage.parent.absolute()
    # Averages: computed lazily in batches while the stack is written (the alignments of
    # the selected classes are collected on the way, so they are not computed twice).
    (paths["class_averages.mrcs"], paths["class_averages_mirrored.mrcs"]), (rot, sh, sc), \
        junk_result = _write_averages(cas, stage, batch_size, junk)
    sel = cas.selection_indices                       # the final ranking
    rank, prot, pshift, pmirror = particle_partition(cas, rot, sh)
    # Centring translated the images before the alignment: add it (in the averagers' frame).
    translations = resolve_chain(src).translations()
    pshift = pshift + translations_after_mirror(translations, pmirror)
    resolution = class_resolution(cas, (rot, sh, sc))          # half-set FRC, Angstrom
    number, psi, origin = relion_poses(rank, prot, pshift, pmirror, K)
    names = _root_source(src).metadata.get("rlnImageName")
    if names is not None:   # as written in particles.star: valid from the project directory
        names = project_image_names(_root_source(src), names.astype(str), project)
    starfile.write(_averages_star(cas, number, project, out, names),
                   stage / "class_averages.star")
    paths["class_averages.star"] = stage / "class_averages.star"
    classes = _classes_table(cas, number)
    classes["classavgResolutionAngst"] = resolution
    if junk_result is not None:
        add_junk_columns(classes, rank, *junk_result[:2])
    starfile.write({"classes": classes}, stage / "classes.star")
    paths["classes.star"] = stage / "classes.star"

    np.savez_compressed(stage / "class_table.npz", class_indices=cas.class_indices,
                        class_refl=cas.class_refl, class_distances=cas.class_distances,
                        selection_indices=sel, rotations=rot, shifts=sh, scores=sc,
                        particle_class_rank=rank, particle_class_number=number,
                        particle_translations=translations,
                        **junk_arrays(junk_result))
    paths["class_table.npz"] = stage / "class_table.npz"

    if names is not None:
        table = _particles_table(src, number, psi, origin, project)
        if junk_result is None:
            starfile.write(table, stage / "particles.star")
            paths["particles.star"] = stage / "particles.star"
        else:
            paths.update(write_junk_particles(table, stage, *junk_result[:2]))
    cas.timings["writing"] = time.perf_counter() - t0

    if report:
        from ..report import write_report

        t0 = time.perf_counter()
        import mrcfile

        with mrcfile.mmap(paths["class_averages.mrcs"], mode="r") as mrc:
            averages = np.asarray(mrc.data)
            full = dict(record)
            full["timings"] = {k: round(v, 3) for k, v in cas.timings.items()}
            assigned = (classes["classavgAssigned"]
                        + classes["classavgAssignedMirrored"]).to_numpy()
            write_report(stage / "report.html", averages=averages, class_ids=sel,
                         reference_ids=cas.metadata["reference_particle"].to_numpy() + 1,
                         populations=assigned, scores=cas.metadata["score"].to_numpy(),
                         ranks=np.arange(1, K + 1),
                         class_distances=cas.class_distances, metadata=full,
                         resolutions=resolution,
                         kept=(None if junk_result is None else junk_result[1].class_kept),
                         kept_fractions=(None if junk_result is None
                                         else junk_result[1].class_kept_fraction),
                         pixel_size=src.pixel_size,
                         title=f"classavg: {K} class averages")
        paths["report.html"] = stage / "report.html"
        cas.timings["report"] = time.perf_counter() - t0

    rec = dict(record)
    rec["timings"] = {k: round(v, 3) for k, v in cas.timings.items()}
    rec["n_particles"] = int(n_images)
    rec["n_classes"] = int(K)
    rec["n_assigned_particles"] = int((rank > 0).sum())
    rec["n_assigned_mirrored"] = int((number > K).sum())
    rec["project_dir"] = str(project)
    if junk_result is not None:
        rec["junk_rejection"] = junk_result[2]
    with open(stage / "run.json", "w") as f:
        json.dump(rec, f, indent=2, default=_json_default)
    paths["run.json"] = stage / "run.json"
    return paths


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)
