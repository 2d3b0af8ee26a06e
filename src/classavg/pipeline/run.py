"""One call from particles to outputs: :func:`run_classavg` (used by ``classavg run``)."""

from __future__ import annotations

import datetime as _dt
import importlib
import logging
import platform
import time
from pathlib import Path

from .._errors import MissingDependencyError, ParameterError
from .._parallel import client_workers, dask_client
from .._tags import get_tags
from .._threads import limit_threads
from .._validation import check_int
from .._version import __version__
from ..classification import RIRClass2D
from ..io._outdir import check_output_dir, source_files
from ..sources.chain import resolve_chain
from .outputs import OUTPUT_NAMES, write_outputs
from .presets import get_preset
from .source import DefaultClassAvgSource

__all__ = ["run_classavg", "prepare_source", "check_run"]

logger = logging.getLogger(__name__)


def prepare_source(src, *, phase_flip=False, downsample=None, normalize=True,
                   invert_contrast=False, mask_radius=None):
    """Apply the usual lazy pre-processing to a particle source.

    Order: Fourier downsample to ``downsample`` pixels -> contrast inversion -> background
    normalisation (zero mean, unit variance outside the particle disk) -> phase flip (needs
    CTF metadata).  Phase flipping last keeps the raw, normalised images one step up the
    chain (``src.parent``), where CTF-aware (Wiener) averaging reads them.  ``mask_radius``
    is the particle radius of the normalisation in pixels of the (downsampled) images
    (default: ``L // 2``; :func:`classavg.pipeline.units.angstrom_options` converts one in
    Angstrom).  Returns the new source and a list describing the steps.

    Raises
    ------
    ParameterError
        ``downsample`` is larger than the image size (equal is a no-op), or ``phase_flip``
        is asked of a source without CTF parameters.
    """
    steps = []
    if downsample is not None:
        downsample = check_int("downsample", downsample, min=2)
        if downsample > src.L:
            raise ParameterError(f"downsample must be at most the image size ({src.L} px) of "
                                 f"{src!r}, got {downsample}; Fourier cropping cannot enlarge")
    if phase_flip and not src.has_ctf:
        raise ParameterError(f"phase_flip needs CTF parameters, but {src!r} has none "
                             "(rlnDefocusU, rlnDefocusV, rlnDefocusAngle, rlnVoltage, "
                             "rlnSphericalAberration, rlnAmplitudeContrast)")
    if downsample is not None and downsample < src.L:   # == L: nothing to do
        src = src.downsample(downsample)
        steps.append(f"downsample({downsample})")
    if invert_contrast:
        src = src.invert_contrast()
        steps.append("invert_contrast")
    if normalize:
        src = src.normalize_background(radius=mask_radius)
        steps.append("normalize_background" if mask_radius is None else
                     f"normalize_background(radius={mask_radius:g})")
    if phase_flip:
        src = src.phase_flip()
        steps.append("phase_flip")
    return src, steps


def run_classavg(src, out_dir, *, preset=None, n_nbor=None, n_classes=None, seed=0,
                 overwrite=False, report=True, record=None, batch_size=1024, client=None,
                 scheduler=None, dask_local=None, device="cpu", classifier_options=None,
                 averager_options=None, threads=None, project_dir=None, junk_rejection=None,
                 junk_options=None):
    """Classify, select and average ``src`` with a preset and write every output.

    Parameters
    ----------
    src : ImageSource
        Particles (already pre-processed, see :func:`prepare_source`); a RELION source keeps
        its STAR metadata so that ``particles.star`` can be written.
    out_dir : path
        Output folder (see :mod:`classavg.pipeline.outputs` for its files).
    preset : str, optional
        Preset version (default: the newest).
    n_nbor, n_classes, seed : optional
        Class size, the maximum number of classes kept, and the seed.
    overwrite : bool
        Replace a finished run in ``out_dir``.
    report : bool
        Write ``report.html``.
    record : dict, optional
        Extra entries for ``run.json`` (input path, pre-processing, command line).
    batch_size : int, optional
        Images per batch of the classifier (bounds its memory).
    client : dask.distributed.Client, optional
        Run the per-batch work on this Dask cluster (:mod:`classavg._parallel`).
    scheduler : str, optional
        Address of a Dask scheduler to connect to for this run (``tcp://host:8786``).
    dask_local : int, optional
        Start a local Dask cluster of this many worker processes for this run.
        At most one of ``client``, ``scheduler`` and ``dask_local``; the results are the same
        as in one process.
    device : {"cpu", "cuda"}, optional
        Where the kernels of the parts that take a device run (``tags.device``: the
        classifier, the BFR/BFSR averagers of every preset; the others run on the CPU).
    classifier_options, averager_options : dict, optional
        Keyword options replacing the preset's for the classifier (e.g. ``bandlimit``) and
        the averager (e.g. ``radius``, the maximum shift in pixels); see
        :func:`classavg.pipeline.units.angstrom_options` for values from Angstrom.
    threads : int, optional
        At most this many threads per BLAS/OpenMP pool and for the default FFT workers
        (:func:`classavg._threads.limit_threads`; default: the libraries' own, all cores).
    project_dir : path, optional
        RELION project directory that the output STAR files' stack paths are relative to
        (default: the input's ``data_dir``, else the working directory).
    junk_rejection : bool, optional
        Score the particles and reject junk (:mod:`classavg.selection.junk`); default: as
        the preset (``Preset.junk``; on from 1.4.0).
    junk_options : dict, optional
        :class:`~classavg.selection.junk.JunkRejector` options replacing the preset's
        (``min_fit``, ``max_extra``, ``extra_mads``, ``extra_ratio``, ``max_missing``,
        ``missing_ratio``, ``class_fraction``, ``max_rejected``).

    Returns
    -------
    (ClassAvgSource, dict)
        The class-average source and the written paths.

    Raises
    ------
    OutputError, ParameterError, MissingDependencyError
        Before any computation (:func:`check_run`).
    """
    cfg = get_preset(preset)
    # Everything knowable about the options and the output folder is checked before the
    # classification (hours at scale): see check_run.
    check_run(src, out_dir, overwrite=overwrite, n_nbor=n_nbor, scheduler=scheduler,
              dask_local=dask_local, device=device)
    if project_dir is not None and not Path(project_dir).is_dir():
        raise ParameterError(f"project_dir must be an existing folder, got {str(project_dir)!r}")
    if dask_local is not None:
        dask_local = check_int("dask_local", dask_local, min=1)
    if threads is not None:
        threads = check_int("threads", threads, min=1)
    if sum(x is not None for x in (client, scheduler, dask_local)) > 1:
        raise ValueError("give at most one of client, scheduler and dask_local")
    if client is None and (scheduler is not None or dask_local is not None):
        with dask_client(scheduler, dask_local) as client:
            return run_classavg(src, out_dir, preset=preset, n_nbor=n_nbor,
                                n_classes=n_classes, seed=seed, overwrite=overwrite,
                                report=report, record=record, batch_size=batch_size,
                                client=client, device=device,
                                classifier_options=classifier_options,
                                averager_options=averager_options, threads=threads,
                                project_dir=project_dir, junk_rejection=junk_rejection,
                                junk_options=junk_options)
    junk = _junk_options(cfg, junk_rejection, junk_options)
    with limit_threads(threads):
        return _run(src, out_dir, cfg, n_nbor=n_nbor, n_classes=n_classes, seed=seed,
                    overwrite=overwrite, report=report, record=record, batch_size=batch_size,
                    client=client, device=device, classifier_options=classifier_options,
                    averager_options=averager_options, threads=threads,
                    project_dir=project_dir, junk=junk)


def _junk_options(cfg, enabled, options):
    """The JunkRejector options of a run (None: no rejection), checked before computing."""
    from ..selection.junk import JunkRejector

    if enabled is None:
        enabled = cfg.junk is not None or options is not None
    if not enabled:
        return None
    opts = {**(cfg.junk or {}), **(options or {})}
    try:
        JunkRejector(**opts)
    except TypeError as exc:
        raise ParameterError(f"junk_options: {exc}") from None
    return opts


def _run(src, out_dir, cfg, *, n_nbor, n_classes, seed, overwrite, report, record, batch_size,
         client, device, classifier_options, averager_options, threads, project_dir, junk):
    """:func:`run_classavg` after its checks, inside the thread limits."""
    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    cas = DefaultClassAvgSource(src, cfg, n_nbor=n_nbor, n_classes=n_classes, seed=seed,
                                device=device,
                                classifier_options={"batch_size": batch_size,
                                                    **(classifier_options or {})},
                                averager_options=averager_options, client=client)
    rec = {
        "classavg_version": __version__,
        "preset": cfg.name,
        "preset_config": cfg.to_dict(),
        "parameters": {"n_nbor": cas.n_nbor, "n_classes": n_classes, "seed": seed,
                       "batch_size": batch_size,
                       "classifier": type(cas.classifier).__name__,
                       "selector": type(cas.class_selector).__name__,
                       "averager": type(cas.averager).__name__,
                       "image_stacker": type(cas.averager.image_stacker).__name__,
                       "classifier_options": dict(classifier_options or {}),
                       "averager_options": dict(averager_options or {}),
                       "junk_rejection": junk},
        "seeds": {type(p).__name__: seed for p in (cas.classifier, cas.class_selector)
                  if get_tags(p).random},
        "input": {"n": src.n, "L": src.L, "pixel_size": src.pixel_size, "source": repr(src),
                  # the pre-processing as the parts saw it (whitening spectra included)
                  "chain": resolve_chain(cas.src).describe()},
        "started": started.isoformat(),
        "python": platform.python_version(),
        "execution": ({"backend": "process", "device": device, "threads": threads}
                      if client is None else
                      {"backend": "dask", "scheduler": client.scheduler.address,
                       "workers": client_workers(client), "device": device,
                       "threads": threads}),
    }
    if isinstance(cas.classifier, RIRClass2D):
        rec["parameters"]["nn_method"] = cas.classifier.nn_method_
        rec["parameters"]["refine"] = cas.classifier.refine
    rec.update(record or {})
    paths = write_outputs(cas, out_dir, record=rec, overwrite=overwrite, report=report,
                          project_dir=project_dir, junk=junk)
    logger.info("class averaging finished in %.1f s", time.perf_counter() - t0)
    return cas, {k: Path(v) for k, v in paths.items()}


def check_run(src, out_dir, *, overwrite=False, n_nbor=None, scheduler=None, dask_local=None,
              device="cpu"):
    """The checks :func:`run_classavg` makes before any computation (seconds at most).

    The output folder (:func:`classavg.io._outdir.check_output_dir`: not a file, writable,
    no finished run unless ``overwrite``, no file classavg did not write, no output that would
    replace one of ``src``'s input files; stale staging folders removed), the class size
    against the number of images, and that Dask (``scheduler``/``dask_local``) and CuPy
    (``device="cuda"``) are installed when asked for.

    Raises
    ------
    OutputError
        The output folder is refused.
    ParameterError
        ``n_nbor`` is not smaller than the number of images.
    MissingDependencyError
        Dask or CuPy is asked for but not installed.
    """
    if n_nbor is not None and check_int("n_nbor", n_nbor, min=1) >= src.n:
        raise ParameterError(f"n_nbor must be smaller than the number of images ({src.n}), "
                             f"got {n_nbor}")
    if scheduler is not None or dask_local is not None:
        try:
            importlib.import_module("dask.distributed")
        except ImportError:
            raise MissingDependencyError("Dask execution (--scheduler / --dask-local) needs "
                                         "dask.distributed: pip install 'classavg[dask]'")
    if device == "cuda":
        from .._backend import check_device
        try:
            check_device(device)
        except ImportError as exc:
            raise MissingDependencyError(str(exc)) from exc
    check_output_dir(out_dir, OUTPUT_NAMES, inputs=source_files(src), overwrite=overwrite,
                     marker="run.json", flag="--overwrite (overwrite=True)")
