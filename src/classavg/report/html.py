"""A self-contained HTML report of a class-averaging run.

:func:`write_report` writes one HTML file that needs nothing else to be viewed, offline or
attached to an e-mail: the CSS and a few lines of JavaScript are inline, and every picture (the
class-average thumbnails and the plots) is embedded as a base64 ``data:image/png`` URI.

The report has three parts:

* a header with the title, a one-line summary and the run record (``metadata``: version,
  preset, parameters, timings, seeds...) as a table;
* a gallery of every class average, in the order given (selection rank), each tile showing
  the rank, class id, reference particle, population (member count) and quality score;
* plots: histograms of the neighbour distances and of each class's mean neighbour distance
  (when ``class_distances`` is given), and score and population against selection rank.

Thumbnails follow the library's image convention (see ``docs/conventions.md``): an image is
indexed ``[y, x]`` with row 0 at the **bottom**, as MRC viewers and RELION show it, so it is
flipped vertically for display.  Each thumbnail is contrast-normalised on its own (clipped to
its 1st and 99th percentiles, mapped to 8 bits) and stored at its native size (or binned down to
at most ``max_thumbnail_px``); the browser scales it up without smoothing
(``image-rendering: pixelated``), which keeps a report of 2,000 averages of 64 x 64 pixels at a
few megabytes.

An inline script counts the thumbnails the browser decoded and shows "k of k averages shown";
the counts are also written to ``<body data-images-loaded=... data-images-failed=...>``
(``data-images-expected`` is static), which the headless-browser test reads.
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
from ._png import bin_images, encode_png_gray8, to_uint8

__all__ = ["write_report"]

logger = logging.getLogger(__name__)

#: Images converted and encoded per batch (bounds memory for memory-mapped or lazy stacks).
_BATCH = 256

_CSS = """
:root { --tile: 128px; color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0 1.5rem 2rem; color: #1e1e1e; background: #f5f5f2;
  font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { padding: 0.8rem 0 0.2rem; border-bottom: 1px solid #d0d0cc; }
h1 { font-size: 1.5rem; margin: 0 0 0.2rem; }
h2 { font-size: 1.15rem; margin: 1.4rem 0 0.5rem; }
.summary { margin: 0.2rem 0; color: #444; }
nav a { margin-right: 1rem; color: #204a87; }
table.meta { border-collapse: collapse; font-size: 0.85rem; background: #fff; }
table.meta th, table.meta td { text-align: left; vertical-align: top; padding: 2px 12px 2px 6px;
  border-bottom: 1px solid #e2e2de; }
table.meta th { font-weight: 600; white-space: nowrap; color: #333; }
table.meta table.meta { background: transparent; }
.note { color: #555; font-size: 0.85rem; max-width: 60rem; }
.controls { font-size: 0.85rem; display: flex; gap: 1.5rem; align-items: center; }
#load-status.bad { color: #a40000; font-weight: 600; }
.gallery { display: flex; flex-wrap: wrap; gap: 8px; }
.tile { margin: 0; padding: 5px; width: calc(var(--tile) + 12px); background: #fff;
  border: 1px solid #d8d8d4; border-radius: 4px; }
.tile img { display: block; width: var(--tile); height: var(--tile); background: #000;
  image-rendering: pixelated; }
.tile figcaption { font-size: 11px; line-height: 1.3; margin-top: 3px; color: #333;
  font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.tile .rank { font-weight: 700; color: #000; }
.plots figure { margin: 0 0 1rem; }
.plots img { max-width: 100%; height: auto; background: #fff; border: 1px solid #d8d8d4; }
.plots figcaption { font-size: 0.85rem; color: #555; }
footer { margin-top: 2rem; font-size: 0.8rem; color: #777; }
"""

_SCRIPT = """
(function () {
  "use strict";
  var imgs = document.querySelectorAll("#gallery img.avg");
  var status = document.getElementById("load-status");
  var pending = false;
  function update() {
    pending = false;
    var ok = 0, bad = 0;
    for (var i = 0; i < imgs.length; i++) {
      if (imgs[i].complete) { if (imgs[i].naturalWidth > 0) { ok++; } else { bad++; } }
    }
    document.body.setAttribute("data-images-loaded", String(ok));
    document.body.setAttribute("data-images-failed", String(bad));
    if (status) {
      status.textContent = ok + " of " + imgs.length + " averages shown" +
        (bad ? "; " + bad + " failed to load" : "");
      status.className = bad ? "bad" : "";
    }
  }
  function later() { if (!pending) { pending = true; setTimeout(update, 50); } }
  for (var i = 0; i < imgs.length; i++) {
    imgs[i].addEventListener("load", later);
    imgs[i].addEventListener("error", later);
  }
  window.addEventListener("load", update);
  update();
  var slider = document.getElementById("tile-size");
  if (slider) {
    slider.addEventListener("input", function () {
      document.documentElement.style.setProperty("--tile", slider.value + "px");
    });
  }
})();
"""


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
        if not value:
            return "<em>none</em>"
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
                 pixel_size=None, max_thumbnail_px=128) -> Path:
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
        Pixel size of the averages in Angstrom, shown in the summary (default: the source's
        pixel size when ``averages`` is an ImageSource, otherwise not shown).
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
                        pixel_size=pixel_size)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    logger.info("wrote report of %d class averages to %s", k, path)
    return path


def _write_html(fh, *, stack, k, L, factor, thumb, class_ids, reference_ids, populations,
                scores, ranks, class_distances, title, metadata, pixel_size):
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
             f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
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
    fh.write("<section id=\"gallery\">\n<h2>Class averages</h2>\n<p class=\"note\">"
             "Sorted by selection rank. Each tile: rank, class id, reference particle (ref), "
             "number of particles assigned to the class (each particle goes to one class; "
             "the average itself is made of its members, see the summary) and quality score. Images are shown with row 0 "
             "at the bottom (y up, as in RELION), each scaled on its own between its 1st and "
             "99th percentiles"
             + (f"; thumbnails binned by {factor}" if factor > 1 else "") + ".</p>\n"
             "<p class=\"controls\"><label>Tile size <input type=\"range\" id=\"tile-size\" "
             "min=\"48\" max=\"384\" step=\"16\" value=\"128\"></label>"
             f"<span id=\"load-status\">{k:,} averages</span></p>\n<div class=\"gallery\">\n")
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
            parts.append(_tile(u8[j], rank=ranks[i], cls=class_ids[i], ref=reference_ids[i],
                               pop=populations[i],
                               score=None if scores is None else scores[i], size=thumb))
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
    fh.write(f"<script>{_SCRIPT}</script>\n</body>\n</html>\n")


def _tile(u8, *, rank, cls, ref, pop, score, size) -> str:
    score_txt = "n/a" if score is None or not math.isfinite(score) else f"{score:.4g}"
    score_attr = "" if score is None or not math.isfinite(score) else repr(float(score))
    label = (f"rank {rank}, class {cls}, reference {ref}, {pop} assigned particles, "
             f"score {score_txt}")
    return (f"<figure class=\"tile\" id=\"rank-{rank}\" data-rank=\"{rank}\" "
            f"data-class=\"{cls}\" data-reference=\"{ref}\" data-population=\"{pop}\" "
            f"data-score=\"{score_attr}\" title=\"{label}\">"
            f"<img class=\"avg\" width=\"{size}\" height=\"{size}\" alt=\"class {cls}\" "
            f"src=\"{_data_uri(encode_png_gray8(u8))}\">"
            f"<figcaption><span class=\"rank\">#{rank}</span> class {cls}<br>ref {ref}"
            f"<br>assigned {pop} &middot; score {score_txt}</figcaption></figure>\n")
