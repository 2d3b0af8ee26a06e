"""Writing the outputs of a class-averaging run (see docs/outputs.md).

Files in the output folder:

``class_averages.mrcs`` / ``class_averages.star``
    The averages (float32 MRC stack) in selection-rank order and a RELION STAR file listing
    them (RELION labels only: ``rlnImageName``, ``rlnClassNumber`` = rank,
    ``rlnClassDistribution``, ``rlnImageOriginalName`` = the reference particle's image).
``classes.star``
    One row per selected class with classavg's own labels (rank, class id, reference particle,
    member count, partition population, score, ``classavgResolutionAngst``: the half-set FRC
    resolution at 0.143 in Angstrom, :mod:`classavg.metrics.resolution`; ``inf`` where the
    halves never correlate, NaN where undefined): not meant for RELION.
``class_table.npz``
    The full neighbour table of every image (``class_indices``, ``class_refl``,
    ``class_distances``), the selection, and the alignment (``rotations`` radians, ``shifts``
    pixels, ``scores``) of the selected classes; read it back with :func:`read_class_table`.
``particles.star``
    The input particles (optics block kept, RELION labels only) with ``rlnClassNumber`` (the
    rank of the selected class the particle is closest to among those containing it; 0 when
    it belongs to no selected class), ``rlnAnglePsi`` and ``rlnOriginXAngst/YAngst`` from its
    alignment to that class's reference.
``run.json``
    Version, preset, parameters, seeds, timings: written last.
``report.html``
    A self-contained gallery of the averages.

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

from ..io._outdir import (check_output_dir, make_stage, os_errors_name,
                          remove_previous_outputs, sigterm_exits, source_files)
from ..io.relion import save_source
from ..sources.chain import resolve_chain
from ._quality import class_resolution

__all__ = ["write_outputs", "read_class_table", "particle_partition", "OUTPUT_NAMES"]

#: Every file a run may write into its output folder (``run.json`` last).
OUTPUT_NAMES = ("class_averages.mrcs", "class_averages.star", "classes.star",
                "class_table.npz", "particles.star", "report.html", "run.json")

logger = logging.getLogger(__name__)


def particle_partition(cas, rotations, shifts):
    """Assign every particle to at most one selected class.

    A particle goes to the selected class, among those listing it, where its feature distance
    to the reference is smallest (a reference belongs to its own class).

    Returns
    -------
    rank : ndarray of int, shape (n_particles,)
        1-based rank of the assigned class, 0 for particles in no selected class.
    rotation : ndarray, shape (n_particles,)
        Radians, aligning the particle onto the class reference (0 when unassigned).
    shift : ndarray, shape (n_particles, 2)
        Pixels (x, y), applied before the rotation.
    mirror : ndarray of bool, shape (n_particles,)
    """
    sel = cas.selection_indices
    members = cas.class_indices[sel]                           # (k, m)
    dist = cas.class_distances[sel].astype(np.float64)
    k, m = members.shape
    ranks = np.repeat(np.arange(1, k + 1), m)
    flat = members.ravel()
    order = np.lexsort((ranks, dist.ravel(), flat))            # by particle, distance, rank
    first = order[np.r_[True, flat[order][1:] != flat[order][:-1]]]
    n = cas.src.n
    rank = np.zeros(n, np.int64)
    rot = np.zeros(n)
    sh = np.zeros((n, 2))
    mir = np.zeros(n, bool)
    p = flat[first]
    rank[p] = ranks[first]
    rot[p] = rotations.reshape(-1)[first]
    sh[p] = shifts.reshape(-1, 2)[first]
    mir[p] = cas.class_refl[sel].ravel()[first]
    return rank, rot, sh, mir


def read_class_table(path):
    """Read ``class_table.npz`` back as a dict of arrays."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _root_source(src):
    """The source that read the files (:func:`classavg.sources.chain.resolve_chain`)."""
    return resolve_chain(src).root


def _portable_image_names(root, names, out_dir):
    """Image names that RELION resolves from the output folder.

    RELION resolves stack paths relative to its project folder (where it runs).  Names that
    resolve as given from the current folder, or relative to the user's ``data_dir`` (the
    project folder), are kept; names found only relative to the input STAR file's folder are
    rewritten relative to the output folder.
    """
    stack_names = getattr(root, "stack_names", None)
    if not stack_names:
        return names
    data_dir = getattr(root, "data_dir", None)
    mapping = {}
    for name, path in zip(stack_names, root.stack_paths):
        keep = Path(name).resolve() == Path(path).resolve() or (
            data_dir is not None and (Path(data_dir) / name).resolve() == Path(path).resolve())
        if not keep:
            mapping[name] = Path(os.path.relpath(path, Path(out_dir).resolve())).as_posix()
    if not mapping:
        return names
    parts = names.str.split("@", n=1, expand=True)
    if parts.shape[1] == 1:
        return names.map(lambda x: mapping.get(x, x))
    stacks = parts[1].map(lambda x: mapping.get(x, x))
    return parts[0] + "@" + stacks


def _particles_table(src, rank, rot, shift, out_dir):
    """The input particle table (RELION labels) with the partition columns."""
    root = _root_source(src)
    md = root.metadata
    keep = [c for c in md.columns if isinstance(c, str) and c.startswith("rln")]
    parts = md[keep].copy()
    if "rlnImageName" not in parts.columns:
        raise ValueError("particles.star needs the input's rlnImageName: run on a RELION STAR "
                         "file (or save the source first)")
    parts["rlnImageName"] = _portable_image_names(root, parts["rlnImageName"].astype(str),
                                                  out_dir)
    parts["rlnClassNumber"] = rank
    # RELION's psi rotates the class reference onto the particle: the inverse of our rotation.
    parts["rlnAnglePsi"] = np.mod(-np.degrees(rot), 360.0)
    # Shifts are measured on the (possibly downsampled) classified images: Angstrom is
    # invariant, so multiply by that source's pixel size.
    # The images were aligned as the chain left them: a centring step translated them
    # first, so the translation from the input image is the sum (both before the rotation).
    shift = shift + resolve_chain(src).translations()
    parts["rlnOriginXAngst"] = shift[:, 0] * src.pixel_size
    parts["rlnOriginYAngst"] = shift[:, 1] * src.pixel_size
    parts = parts.drop(columns=["rlnOriginX", "rlnOriginY"], errors="ignore")
    optics = getattr(root, "optics", None)
    if optics is not None and len(optics):
        # Optics values are folded into the particle rows on reading: keep them in the block.
        parts = parts.drop(columns=[c for c in optics.columns
                                    if c in parts.columns and c != "rlnOpticsGroup"])
        return {"optics": optics, "particles": parts}
    return {"particles": parts}


def write_outputs(cas, out_dir, *, record, overwrite=False, report=True, batch_size=256):
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

    Returns
    -------
    dict
        Output name -> path.
    """
    # The checks of run_classavg again (a direct caller may not have made them); see
    # classavg.io._outdir for the rules and the staging.
    out = check_output_dir(out_dir, OUTPUT_NAMES, inputs=source_files(cas.src),
                           overwrite=overwrite, marker="run.json", flag="overwrite=True")
    with sigterm_exits(), os_errors_name(out):
        stage = make_stage(out)
        try:
            paths = _write_all(cas, stage, record, report, batch_size)
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


def _write_all(cas, stage, record, report, batch_size):
    import time

    t0 = time.perf_counter()
    paths = {}
    src = cas.src
    sel = cas.selection_indices
    n_images = src.n
    # Averages: computed lazily in batches while the stack is written (the alignments of
    # the selected classes are collected on the way, so they are not computed twice).
    md = cas.metadata
    paths["class_averages.star"] = save_source(cas, stage / "class_averages.star",
                                               stack_name="class_averages.mrcs",
                                               batch_size=batch_size)
    paths["class_averages.mrcs"] = stage / "class_averages.mrcs"
    rot, sh, sc = cas.alignment()
    rank, prot, pshift, _ = particle_partition(cas, rot, sh)
    resolution = class_resolution(cas, (rot, sh, sc))          # half-set FRC, Angstrom
    population = np.bincount(rank, minlength=sel.size + 1)[1:]
    # Add the class columns (RELION labels) to the averages' STAR file.
    blocks = starfile.read(paths["class_averages.star"], always_dict=True)
    table = blocks["particles"]
    table["rlnClassNumber"] = np.arange(1, sel.size + 1)
    table["rlnClassDistribution"] = population / n_images
    names = _root_source(src).metadata.get("rlnImageName")
    if names is not None:
        table["rlnImageOriginalName"] = names.to_numpy()[md["reference_particle"].to_numpy()]
    starfile.write(blocks, paths["class_averages.star"], overwrite=True)

    classes = pd.DataFrame({
        "classavgRank": np.arange(1, sel.size + 1),
        "classavgClassId": sel,
        "classavgReferenceParticle": md["reference_particle"].to_numpy(),
        "classavgMembers": np.full(sel.size, cas.n_nbor),
        "classavgPopulation": population,
        "classavgScore": md["score"].to_numpy(),
        "classavgMeanDistance": cas.class_distances[sel, 1:].mean(axis=1)
        if cas.n_nbor > 1 else np.zeros(sel.size),
        "classavgResolutionAngst": resolution,
    })
    starfile.write({"classes": classes}, stage / "classes.star")
    paths["classes.star"] = stage / "classes.star"

    np.savez_compressed(stage / "class_table.npz", class_indices=cas.class_indices,
                        class_refl=cas.class_refl, class_distances=cas.class_distances,
                        selection_indices=sel, rotations=rot, shifts=sh, scores=sc,
                        particle_class_rank=rank)
    paths["class_table.npz"] = stage / "class_table.npz"

    if names is not None:
        starfile.write(_particles_table(src, rank, prot, pshift, stage.parent),
                       stage / "particles.star")
        paths["particles.star"] = stage / "particles.star"
    cas.timings["writing"] = time.perf_counter() - t0

    if report:
        from ..report import write_report

        t0 = time.perf_counter()
        import mrcfile

        with mrcfile.mmap(paths["class_averages.mrcs"], mode="r") as mrc:
            averages = np.asarray(mrc.data)
            full = dict(record)
            full["timings"] = {k: round(v, 3) for k, v in cas.timings.items()}
            write_report(stage / "report.html", averages=averages, class_ids=sel,
                         reference_ids=md["reference_particle"].to_numpy(),
                         populations=population, scores=md["score"].to_numpy(),
                         ranks=np.arange(1, sel.size + 1),
                         class_distances=cas.class_distances, metadata=full,
                         resolutions=resolution,
                         pixel_size=src.pixel_size,
                         title=f"classavg: {sel.size} class averages")
        paths["report.html"] = stage / "report.html"
        cas.timings["report"] = time.perf_counter() - t0

    rec = dict(record)
    rec["timings"] = {k: round(v, 3) for k, v in cas.timings.items()}
    rec["n_particles"] = int(n_images)
    rec["n_classes"] = int(sel.size)
    rec["n_assigned_particles"] = int((rank > 0).sum())
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
