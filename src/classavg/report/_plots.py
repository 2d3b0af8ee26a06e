"""The report's plots, drawn with matplotlib without pyplot or any global backend switch.

Figures are created with :class:`matplotlib.figure.Figure` directly and saved to PNG through the
Agg canvas, so importing or calling this module never touches the user's matplotlib backend.
matplotlib is imported lazily (inside the functions).
"""

from __future__ import annotations

import io

import numpy as np

__all__ = ["distance_figure", "rank_figure"]

_BLUE = "#3465a4"
_ORANGE = "#f57900"
_DPI = 100


def _save(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)                              # attach an Agg canvas (no pyplot)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def _bins(values: np.ndarray, max_bins: int = 80):
    edges = np.histogram_bin_edges(values, bins="auto")
    if edges.size - 1 > max_bins:
        edges = np.histogram_bin_edges(values, bins=max_bins)
    return edges


def distance_figure(class_distances: np.ndarray, selected: np.ndarray | None) -> bytes | None:
    """Histograms of the neighbour distances, as PNG bytes.

    Left: every neighbour distance ``class_distances[:, 1:]`` (column 0 is the reference
    itself).  Right: the mean neighbour distance of each class, with the selected classes
    overlaid.

    Parameters
    ----------
    class_distances : numpy.ndarray, shape (n, n_nbor)
        Distances of each class's members to its reference, column 0 being the reference.
    selected : numpy.ndarray of int or None
        Class ids (rows of ``class_distances``) of the selected classes; ids outside
        ``0..n-1`` are ignored.

    Returns
    -------
    bytes or None
        None when there is no finite neighbour distance to plot.
    """
    from matplotlib.figure import Figure

    d = np.asarray(class_distances, dtype=np.float64)
    nbr = d[:, 1:]
    finite = np.isfinite(nbr)
    values = nbr[finite]
    if values.size == 0:
        return None
    counts = finite.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(finite, nbr, 0.0).sum(axis=1) / counts
    has_mean = counts > 0

    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.hist(values, bins=_bins(values), color=_BLUE)
    ax1.set_xlabel("distance of a neighbour to its class reference")
    ax1.set_ylabel("count")
    ax1.set_title(f"all neighbour distances ({values.size:,} pairs)")

    m = means[has_mean]
    edges = _bins(m)
    ax2.hist(m, bins=edges, color=_BLUE, label=f"all classes ({m.size:,})")
    if selected is not None:
        sel = np.asarray(selected, dtype=np.int64)
        sel = sel[(sel >= 0) & (sel < d.shape[0])]
        sel = sel[has_mean[sel]]
        if sel.size:
            ax2.hist(means[sel], bins=edges, color=_ORANGE, alpha=0.8,
                     label=f"selected ({sel.size:,})")
    ax2.set_xlabel("mean neighbour distance of a class")
    ax2.set_ylabel("classes")
    ax2.set_title("per-class mean distance")
    ax2.legend(frameon=False)
    return _save(fig)


def rank_figure(ranks: np.ndarray, scores: np.ndarray | None,
                populations: np.ndarray) -> bytes | None:
    """Score and population against selection rank, as PNG bytes.

    Parameters
    ----------
    ranks : numpy.ndarray, shape (k,)
    scores : numpy.ndarray, shape (k,), or None
        NaN scores are left out.
    populations : numpy.ndarray, shape (k,)

    Returns
    -------
    bytes or None
        None when there are no averages.
    """
    from matplotlib.figure import Figure

    k = ranks.size
    if k == 0:
        return None
    marker = dict(marker="o", markersize=3 if k <= 200 else 1.5, linestyle="none")
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    if scores is not None and np.isfinite(scores).any():
        ok = np.isfinite(scores)
        ax1.plot(ranks[ok], scores[ok], color=_BLUE, **marker)
        ax1.set_title("quality score vs selection rank")
    else:
        ax1.text(0.5, 0.5, "no scores", ha="center", va="center", transform=ax1.transAxes)
        ax1.set_title("quality score vs selection rank")
    ax1.set_xlabel("selection rank")
    ax1.set_ylabel("score")
    ax2.plot(ranks, populations, color=_ORANGE, **marker)
    ax2.set_xlabel("selection rank")
    ax2.set_ylabel("assigned particles")
    ax2.set_title("assigned particles (rlnClassNumber k or K+k) vs rank")
    return _save(fig)
