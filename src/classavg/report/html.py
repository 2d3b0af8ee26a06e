"""A self-contained HTML report of a class-averaging run.

:func:`write_report` writes one HTML file that needs nothing else to be viewed, offline or
attached to an e-mail: the CSS and a few lines of JavaScript are inline, and every picture (the
class-average thumbnails and the plots) is embedded as a base64 ``data:image/png`` URI.

The report has three parts:

* a header with the title, a one-line summary and the run record (``metadata``: version,
  preset, parameters, timings, seeds...) as a table;
* a gallery of every class average, in the order given (selection rank), each tile showing
  the rank, class id, reference particle, population (member count), quality score and
  half-set resolution (:mod:`classavg.metrics.resolution`), with a scale bar when the pixel
  size is known; the gallery can be sorted (rank, population, score, resolution), filtered
  (kept / rejected classes) and classes selected by clicking and exported as
  ``selected_classes.txt`` (1-based ranks such as ``1,3,5-9``, the file
  ``classavg select --classes-from`` reads); see :mod:`classavg.report._template`;
* plots: histograms of the neighbour distances and of each class's mean neighbour distance
  (when ``class_distances`` is given), and score and population against selection rank.

Thumbnails follow the library's image convention (see ``docs/conventions.md``): an image is
indexed ``[y, x]`` with row 0 at the **bottom**, as MRC viewers and RELION show it, so it is
flipped vertically for display.  Each thumbnail is contrast-normalised on its own (clipped to
its 1st and 99th percentiles, mapped to 8 bits) and stored at its native size (or binned down to
at most ``max_thumbnail_px``); the browser scales it up without smoothing
(``image-rendering: pixelated``), which keeps a report of 2,000 averages of 64 x 64 pixels at a
few megabytes.

Scale bar: a bar of a round length (1, 2 or 5 times a power of ten Angstrom; the one closest to
a quarter of the box on a log scale, :func:`scale_bar_angstrom`) at the lower left of every
thumbnail, its width a fraction of the image width, so it follows the tile-size slider.

An inline script counts the thumbnails the browser decoded and shows "k of k averages shown";
the counts are also written to ``<body data-images-loaded=... data-images-failed=...>``
(``data-images-expected`` is static), which the headless-browser tests read, together with
the sort, filter and selection state (:mod:`classavg.report._template`).
"""

from __future__ import annotations

import base64
import html
import logging
import math
import numbers
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .._progress import progress
from .._validation import check_float, check_int
from .._version import __version__
from ._gallery import gallery_head, scale_bar_angstrom, tile
from ._images import bin_images, to_uint8
from ._template import CSS, SCRIPT

__all__ = ["write_report", "scale_bar_angstrom"]

logger = logging.getLogger(__name__)

#: Images converted and encoded per batch (bounds memory for memory-mapped or lazy stacks).
_BATCH = 256

# -- small helpers ------------------------------------------------------------------------------
def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt_number(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, numbers.Integral):
        return str(int(v))
    v = float(v)
    if math.isnan(v):
        return "n/a"
    return f"{v:.6g}"


def _fmt_seconds(v) -> str:
    v = float(v)
    if not math.isfinite(v):
        return _fmt_number(v)
    if v < 60:
        return f"{v:.3g} s"
    return f"{v:.0f} s ({v / 60:.1f} min)"


def _render_value(value, *, key="", depth=0) -> str:
    """HTML for one metadata value: dicts become nested tables, sequences lists, numbers are
    formatted (under a ``timings`` key as seconds), everything else is escaped text."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dict):
        if not value:            # an empty options dict: the part is on, with its defaults
            return "<em>defaults</em>"
        if depth >= 4:
            return _esc(repr(value))
        return _render_table(value, timings="timing" in str(key).lower(), depth=depth + 1)
    if isinstance(value, np.ndarray):
        value = value.tolist() if value.size <= 50 else f"array of shape {value.shape}"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        if len(items) > 50:
            return _esc(f"{len(items)} items: ") + ", ".join(
                _render_value(v, depth=depth + 1) for v in items[:20]) + ", &hellip;"
        return ", ".join(_render_value(v, depth=depth + 1) for v in items) or "<em>none</em>"
    if value is None:
        return "<em>none</em>"
    if isinstance(value, numbers.Real):
        return _esc(_fmt_number(value))
    return _esc(value)


def _render_table(mapping: dict, *, timings=False, depth=0) -> str:
    rows = []
    for k, v in mapping.items():
        if timings and isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)):
            cell = _esc(_fmt_seconds(v))
        else:
            cell = _render_value(v, key=k, depth=depth)
        rows.append(f"<tr><th>{_esc(k)}</th><td>{cell}</td></tr>")
    return '<table class="meta">' + "".join(rows) + "</table>"


def _vector(name, value, k, *, dtype, allow_none=False):
    """``value`` as a 1-D array of length ``k`` (or None), with a clear error otherwise."""
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{name} must be an array of {k} values, got None")
    arr = np.asarray(value)
    if arr.shape != (k,):
        raise ValueError(f"{name} must have shape ({k},) (one value per average), "
                         f"got shape {arr.shape}")
    if dtype is np.int64:
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            if not np.issubdtype(arr.dtype, np.floating) or not np.all(arr == np.round(arr)):
                raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
        return arr.astype(np.int64)
    if dtype is bool:
        return arr
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}") from None


class _Stack:
    """Batched read access to ``averages``: a (k, L, L) array (memory-mapped is fine) or an
    :class:`~classavg.ImageSource` (anything with ``n``, ``L`` and ``images[a:b]``)."""

    def __init__(self, averages):
        self.pixel_size = None
        if hasattr(averages, "images") and hasattr(averages, "L") and hasattr(averages, "n"):
            self.k, self.L = int(averages.n), int(averages.L)
            self._get = lambda a, b: np.asarray(averages.images[a:b])
            self.pixel_size = getattr(averages, "pixel_size", None)
            return
        arr = np.asarray(averages)
        if arr.ndim != 3 or arr.shape[1] != arr.shape[2] or arr.shape[1] < 1:
            raise ValueError("averages must be an array of shape (k, L, L) (or an ImageSource), "
                             f"got shape {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"averages must hold real numbers, got dtype {arr.dtype}")
        self.k, self.L = arr.shape[0], arr.shape[1]
        self._get = lambda a, b: arr[a:b]

    def batches(self, size):
        for a in range(0, self.k, size):
            yield a, self._get(a, min(a + size, self.k))


# -- the report ---------------------------------------------------------------------------------
def write_report(path, *, averages, class_ids, reference_ids=None, populations, scores=None,
                 ranks=None, class_distances=None, title="classavg report", metadata=None,
                 pixel_size=None, resolutions=None, kept=None, kept_fractions=None,
                 max_thumbnail_px=128) -> Path:
    """Write a self-contained HTML report of class averages.

    The file needs no network and no other file: CSS and script are inline and every image is a
    base64 PNG ``data:`` URI.  It is written atomically: to a temporary file in the same
    folder, renamed over ``path`` when complete (an existing file is replaced).

    Parameters
    ----------
    path : str or os.PathLike
        Output file (``report.html``).  Its folder must exist.
    averages : numpy.ndarray, shape (k, L, L), or ImageSource
        Class averages in the order to show (selection rank), indexed ``[image, y, x]`` with
        row 0 at the bottom.  A memory-mapped array or an ``ImageSource`` (for example a
        ``ClassAvgSource``) is read in batches of 256 images.
    class_ids : array_like of int, shape (k,)
        Class id of each average (its row in the neighbour table).
    reference_ids : array_like of int, shape (k,), optional
        Reference particle of each class (default: ``class_ids``, since by convention
        ``class_indices[c, 0] == c``).
    populations : array_like of int, shape (k,)
        Particles assigned to each class (the partition: ``rlnClassNumber`` ``k`` or
        ``K + k`` in ``particles.star``), shown as "assigned"; not the members behind the
        average (``n_nbor``, named in the summary).
    scores : array_like of float, shape (k,), optional
        Quality score of each average; NaN is shown as "n/a".
    ranks : array_like of int, shape (k,), optional
        Selection rank of each average (default ``1..k``).
    class_distances : numpy.ndarray, shape (n, n_nbor), optional
        The full distance table over all ``n`` classes (column 0: the reference itself), used
        for the distance histograms.  Non-finite entries are ignored.
    title : str, optional
        Page title and heading.
    metadata : dict, optional
        Run record shown as a table (for example ``version``, ``preset``, ``parameters``,
        ``timings``, ``seeds``).  Nested dicts become nested tables; numbers under a key
        containing "timing" are shown as seconds.
    pixel_size : float, optional
        Pixel size of the averages in Angstrom, shown in the summary and used for the scale
        bar (default: the source's pixel size when ``averages`` is an ImageSource, otherwise
        neither is shown).
    resolutions : array_like of float, shape (k,), optional
        Half-set FRC resolution of each class in Angstrom (``inf``: no correlation, NaN:
        undefined, both shown and sorted last); sorting by resolution is offered when given.
    kept : array_like of bool, shape (k,), optional
        Whether each class is kept (True) or rejected by the automatic selection (default:
        all kept); the gallery filter shows either or both.
    kept_fractions : array_like of float, shape (k,), optional
        Fraction of each class's assigned particles that the junk rejection kept (NaN: none
        assigned), shown per tile when given.
    max_thumbnail_px : int, optional
        Thumbnails larger than this are mean-binned by an integer factor to at most this size
        (default 128; averages of 64 x 64 are stored at their native size).

    Returns
    -------
    pathlib.Path
        The report's path.

    Raises
    ------
    ValueError, TypeError
        On arrays of the wrong shape or type, naming the argument.
    """
    path = Path(path)
    stack = _Stack(averages)
    k, L = stack.k, stack.L
    class_ids = _vector("class_ids", class_ids, k, dtype=np.int64)
    reference_ids = (class_ids if reference_ids is None
                     else _vector("reference_ids", reference_ids, k, dtype=np.int64))
    populations = _vector("populations", populations, k, dtype=np.int64)
    if populations.size and populations.min() < 0:
        raise ValueError(f"populations must be non-negative, got min {populations.min()}")
    scores = _vector("scores", scores, k, dtype=np.float64, allow_none=True)
    ranks = (np.arange(1, k + 1, dtype=np.int64) if ranks is None
             else _vector("ranks", ranks, k, dtype=np.int64))
    if ranks.size and ranks.min() < 1:
        raise ValueError(f"ranks must be 1-based (>= 1), got min {ranks.min()}")
    if resolutions is not None:
        resolutions = np.asarray(resolutions, dtype=np.float64)
    resolutions = _vector("resolutions", resolutions, k, dtype=np.float64, allow_none=True)
    if resolutions is not None and np.any(resolutions <= 0):
        raise ValueError("resolutions must be positive Angstrom (inf or NaN where undefined)")
    kept = np.ones(k, bool) if kept is None else np.asarray(kept)
    if kept.dtype != bool:
        raise ValueError(f"kept must hold booleans, got dtype {kept.dtype}")
    kept = _vector("kept", kept, k, dtype=bool)
    kept_fractions = _vector("kept_fractions", kept_fractions, k, dtype=np.float64,
                             allow_none=True)
    if class_distances is not None:
        class_distances = np.asarray(class_distances, dtype=np.float64)
        if class_distances.ndim != 2 or class_distances.shape[1] < 1:
            raise ValueError("class_distances must have shape (n, n_nbor), got shape "
                             f"{class_distances.shape}")
    if not isinstance(title, str):
        raise TypeError(f"title must be a string, got {title!r}")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict or None, got {type(metadata).__name__}")
    if pixel_size is None:
        pixel_size = stack.pixel_size
    pixel_size = check_float("pixel_size", pixel_size, min=0, min_inclusive=False,
                             allow_none=True)
    max_thumbnail_px = check_int("max_thumbnail_px", max_thumbnail_px, min=1)
    factor = max(1, math.ceil(L / max_thumbnail_px))
    thumb = L // factor

    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write report {str(path)!r}: folder "
                                f"{str(path.parent)!r} does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open honours the umask (a NamedTemporaryFile would be private, 0600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(fd, "w", encoding="utf-8", newline="\n") as fh:
            _write_html(fh, stack=stack, k=k, L=L, factor=factor, thumb=thumb,
                        class_ids=class_ids, reference_ids=reference_ids,
                        populations=populations, scores=scores, ranks=ranks,
                        class_distances=class_distances, title=title, metadata=metadata,
                        pixel_size=pixel_size, resolutions=resolutions, kept=kept,
                        kept_fractions=kept_fractions)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    logger.info("wrote report of %d class averages to %s", k, path)
    return path


def _write_html(fh, *, stack, k, L, factor, thumb, class_ids, reference_ids, populations,
                scores, ranks, class_distances, title, metadata, pixel_size, resolutions, kept,
                kept_fractions=None):
    from ._plots import distance_figure, rank_figure

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    version = (metadata or {}).get("version", __version__)
    summary = [f"{k:,} class average{'s' if k != 1 else ''}", f"{L} &times; {L} px"]
    if pixel_size is not None:
        summary.append(f"{pixel_size:.4g} &Aring;/px (box {L * pixel_size:.4g} &Aring;)")
    if class_distances is not None:
        summary.append(f"{class_distances.shape[0]:,} classes of "
                       f"{class_distances.shape[1]} members considered")
    summary.append(f"classavg {_esc(version)}")
    summary.append(f"generated {now}")

    fh.write("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
             f"<meta name=\"generator\" content=\"classavg {_esc(__version__)}\">\n"
             f"<title>{_esc(title)}</title>\n<style>{CSS}</style>\n</head>\n"
             f"<body data-images-expected=\"{k}\" data-images-loaded=\"\" "
             "data-images-failed=\"\">\n")
    fh.write(f"<header>\n<h1>{_esc(title)}</h1>\n<p class=\"summary\">"
             + " &middot; ".join(summary) + "</p>\n<nav><a href=\"#run\">Run</a>"
             "<a href=\"#gallery\">Class averages</a><a href=\"#plots\">Plots</a></nav>\n"
             "</header>\n")

    # run record
    fh.write("<section id=\"run\">\n<h2>Run</h2>\n")
    if metadata:
        fh.write(_render_table(metadata) + "\n")
    else:
        fh.write("<p class=\"note\">No run record was given.</p>\n")
    fh.write("</section>\n")

    # gallery
    bar_a = None if pixel_size is None or k == 0 else scale_bar_angstrom(L * pixel_size)
    bar_pct = None if bar_a is None else 100.0 * bar_a / (L * pixel_size)
    fh.write(gallery_head(k, factor, scores, resolutions, kept, bar_a))
    if k == 0:
        fh.write("<p class=\"note\">No class averages.</p>\n")
    bar = progress(total=k, desc="report", unit="avg")
    for start, batch in stack.batches(_BATCH):
        batch = np.asarray(batch)
        if batch.shape[1:] != (L, L):
            raise ValueError(f"averages must be images of {L} x {L} pixels, got a batch of "
                             f"shape {batch.shape}")
        u8 = to_uint8(bin_images(np.asarray(batch, dtype=np.float64), factor))
        parts = []
        for j in range(u8.shape[0]):
            i = start + j
            parts.append(tile(u8[j], rank=ranks[i], cls=class_ids[i], ref=reference_ids[i],
                               pop=populations[i],
                               score=None if scores is None else scores[i],
                               res=None if resolutions is None else resolutions[i],
                               kept=bool(kept[i]), size=thumb, bar=(bar_a, bar_pct),
                               kept_fraction=(None if kept_fractions is None
                                              else kept_fractions[i])))
        fh.write("".join(parts))
        bar.update(u8.shape[0])
    bar.close()
    fh.write("</div>\n</section>\n")

    # plots
    fh.write("<section id=\"plots\" class=\"plots\">\n<h2>Plots</h2>\n")
    if class_distances is not None:
        png = distance_figure(class_distances, class_ids)
        if png is not None:
            fh.write(f"<figure><img class=\"plot\" alt=\"distance histograms\" "
                     f"src=\"{_data_uri(png)}\"><figcaption>Left: distance of every neighbour "
                     "to its class reference (the classifier's feature distance). Right: mean "
                     "neighbour distance per class, all classes and the selected ones."
                     "</figcaption></figure>\n")
        else:
            fh.write("<p class=\"note\">No finite neighbour distances to plot.</p>\n")
    else:
        fh.write("<p class=\"note\">No distance table was given.</p>\n")
    png = rank_figure(ranks.astype(np.float64), scores, populations)
    if png is not None:
        fh.write(f"<figure><img class=\"plot\" alt=\"score and population against rank\" "
                 f"src=\"{_data_uri(png)}\"><figcaption>Quality score (left) and number of "
                 "particles assigned to each class (right; not the members behind the "
                 "average) against its selection rank."
                 "</figcaption></figure>\n")
    fh.write("</section>\n")
    fh.write(f"<footer>Written by classavg {_esc(__version__)}. This file is self-contained: "
             "it can be copied, archived or e-mailed on its own.</footer>\n")
    fh.write(f"<script>{SCRIPT}</script>\n</body>\n</html>\n")
