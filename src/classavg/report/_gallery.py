"""The gallery of ``report.html``: its controls, the tiles and the scale bar
(:mod:`classavg.report.html`; the script that drives them is in :mod:`._template`)."""

from __future__ import annotations

import base64
import html
import math

import numpy as np

from ._images import encode_png_gray8

__all__ = ["scale_bar_angstrom", "gallery_head", "tile"]


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def scale_bar_angstrom(box_angstrom: float) -> float:
    """Scale-bar length: the value ``{1, 2, 5} x 10^n`` Angstrom closest to a quarter of the
    box on a log scale (e.g. 50 for a 200 A box, 100 for 400 A)."""
    target = float(box_angstrom) / 4.0
    e = math.floor(math.log10(target))
    cands = [m * 10.0 ** p for p in (e - 1, e, e + 1) for m in (1, 2, 5)]
    return min(cands, key=lambda c: abs(math.log(c / target)))


def _score_order(scores):
    """"asc" when the finite scores never decrease along the rank order, else "desc"."""
    if scores is None:
        return "desc"
    f = scores[np.isfinite(scores)]
    return "asc" if f.size > 1 and np.all(np.diff(f) >= 0) and f[-1] > f[0] else "desc"


def _option(value, label, enabled=True):
    return f"<option value=\"{value}\"{'' if enabled else ' disabled'}>{label}</option>"


def gallery_head(k, factor, scores, resolutions, kept, bar_a):
    """The gallery's heading, notes and controls, and the opening of the tile container."""
    n_rej = int(k - kept.sum())
    order = _score_order(scores)
    bar = (f" The yellow scale bar is {bar_a:g} &Aring;." if bar_a is not None
           else " No pixel size was given: no scale bar.")
    return (
        "<section id=\"gallery\">\n<h2>Class averages</h2>\n<p class=\"note\">"
        "Each tile: rank (the class number of classes.star and class_averages.star), class id "
        "(0-based row of the neighbour table), reference particle (ref, 1-based), number of "
        "particles assigned to the class (assigned: rlnClassNumber k or its mirror class in "
        "particles.star; each particle goes to one class, while the average is made of its "
        "members, classes.star _classavgMembers), quality score (ranked "
        + ("lowest" if order == "asc" else "highest") + " first) and half-set FRC "
        "resolution at 0.143 (res; &infin;: no correlation, n/a: undefined). Images are "
        "shown with row 0 at the bottom (y up, as in RELION), each scaled on its own between "
        "its 1st and 99th percentiles"
        + (f"; thumbnails binned by {factor}" if factor > 1 else "") + "." + bar
        + f" {k - n_rej:,} kept, {n_rej:,} rejected. Click a tile to select it; export "
        "writes selected_classes.txt (1-based ranks, e.g. 1,3,5-9) for "
        "<code>classavg select --classes-from</code>.</p>\n"
        "<p class=\"controls\"><label>Tile size <input type=\"range\" id=\"tile-size\" "
        "min=\"48\" max=\"384\" step=\"16\" value=\"128\"></label>"
        "<label>Sort by <select id=\"sort-key\">" + _option("rank", "rank")
        + _option("population", "population", True)
        + _option("score", "score", scores is not None)
        + _option("resolution", "resolution", resolutions is not None) + "</select></label>"
        "<label><input type=\"checkbox\" id=\"sort-reverse\"> reverse</label>"
        "<label>Show <select id=\"filter-kept\">" + _option("all", "all")
        + _option("kept", "kept") + _option("rejected", "rejected") + "</select></label>"
        f"<span id=\"load-status\">{k:,} averages</span></p>\n"
        "<p class=\"controls\"><button type=\"button\" id=\"select-shown\">Select shown"
        "</button><button type=\"button\" id=\"select-none\">Clear</button>"
        "<span id=\"selection-count\">0 selected</span>"
        "<output id=\"selection-text\" for=\"tiles\"></output>"
        "<a id=\"export\" download=\"selected_classes.txt\" aria-disabled=\"true\">"
        "Export selected_classes.txt</a></p>\n"
        f"<div class=\"gallery\" id=\"tiles\" data-score-order=\"{order}\">\n")


def _fmt_res(res):
    if res is None or math.isnan(res):
        return "n/a", ""
    if math.isinf(res):
        return "&infin;", "Infinity"
    return f"{res:.3g} &Aring;", repr(float(res))


def tile(u8, *, rank, cls, ref, pop, score, res, kept, size, bar, kept_fraction=None) -> str:
    score_txt = "n/a" if score is None or not math.isfinite(score) else f"{score:.4g}"
    score_attr = "" if score is None or not math.isfinite(score) else repr(float(score))
    res_txt, res_attr = _fmt_res(res)
    label = (f"rank {rank}, class {cls}, reference {ref}, {pop} assigned particles, score {score_txt}, "
             f"resolution {html.unescape(res_txt)}" + ("" if kept else ", rejected"))
    frac = ("" if kept_fraction is None or not math.isfinite(kept_fraction)
            else f"{100 * kept_fraction:.0f} %")
    if frac:
        label += f", {frac} of its particles kept"
    bar_a, pct = bar
    scale = ("" if bar_a is None else f"<span class=\"scalebar\" style=\"width: {pct:.4f}%\" "
             f"data-angstrom=\"{bar_a:g}\" title=\"{bar_a:g} &Aring;\"></span>")
    return (f"<figure class=\"tile{'' if kept else ' rejected'}\" id=\"rank-{rank}\" "
            f"data-rank=\"{rank}\" data-class=\"{cls}\" data-reference=\"{ref}\" "
            f"data-population=\"{pop}\" data-score=\"{score_attr}\" "
            f"data-resolution=\"{res_attr}\" data-kept=\"{int(kept)}\" tabindex=\"0\" "
            f"role=\"button\" aria-pressed=\"false\" title=\"{_esc(label)}\">"
            f"<div class=\"frame\"><img class=\"avg\" width=\"{size}\" height=\"{size}\" "
            f"alt=\"class {cls}\" src=\"{_data_uri(encode_png_gray8(u8))}\">{scale}</div>"
            f"<figcaption><span class=\"rank\">#{rank}</span> class {cls}"
            + ("" if kept else " <span class=\"flag\">rejected</span>")
            + f"<br>ref {ref}<br>assigned {pop} &middot; score {score_txt}<br>res {res_txt}"
            + (f"<br>particles kept {frac}" if frac else "")
            + "</figcaption></figure>\n")
