"""Acceptance: sorting, filtering, selection, export and the scale bar of the report, run in
headless Chromium.

A small harness script is appended to the written report; it drives the page as a user would
(``element.click()`` on tiles and buttons, changing the ``<select>`` controls and firing their
``change`` events, which run the report's own listeners) and writes what it saw into a
``<pre id="harness">`` element as JSON, read back from ``--dump-dom``.  The scale bar is
measured on a screenshot.  Skipped without Chromium (see ``test_browser.py``).
"""

from __future__ import annotations

import json
import re
import urllib.parse

import numpy as np
import pytest

from classavg.report import write_report
from classavg.report._template import format_ranks

from .test_browser import CHROMIUM, run_chromium

mpimg = pytest.importorskip("matplotlib.image")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary found")

K, L = 12, 32
HARNESS = """
<script>
(function () {
  var out = {};
  function order() {
    return Array.prototype.map.call(document.querySelectorAll("#tiles figure.tile"),
      function (t) { return parseInt(t.getAttribute("data-rank"), 10); });
  }
  function shown() {
    return Array.prototype.filter.call(document.querySelectorAll("#tiles figure.tile"),
      function (t) { return !t.hidden && getComputedStyle(t).display !== "none"; })
      .map(function (t) { return parseInt(t.getAttribute("data-rank"), 10); });
  }
  function set(id, value) {
    var el = document.getElementById(id);
    if (el.type === "checkbox") { el.checked = value; } else { el.value = value; }
    el.dispatchEvent(new Event("change"));
  }
  out.initial = order();
  ["population", "score", "resolution", "rank"].forEach(function (key) {
    set("sort-key", key); out[key] = order();
  });
  set("sort-key", "population"); set("sort-reverse", true);
  out.population_reversed = order(); out.sort_attr = document.body.getAttribute("data-sort");
  set("sort-reverse", false); set("sort-key", "rank");
  set("filter-kept", "rejected"); out.rejected = shown();
  set("filter-kept", "kept"); out.kept = shown();
  out.shown_attr = document.body.getAttribute("data-shown");
  document.getElementById("select-shown").click(); out.kept_selection = document.getElementById("selection-text").textContent;
  document.getElementById("select-none").click();
  set("filter-kept", "all"); out.all = shown();
  [9, 1, 5, 6, 7, 8, 3, 11].forEach(function (r) { document.getElementById("rank-" + r).click(); });
  document.getElementById("rank-11").click();            // a second click deselects
  out.text = document.getElementById("selection-text").textContent;
  var link = document.getElementById("export");
  out.href = link.getAttribute("href"); out.download = link.getAttribute("download");
  out.pressed = Array.prototype.map.call(document.querySelectorAll("figure.tile.selected"),
    function (t) { return t.getAttribute("aria-pressed"); });
  out.samples = [[], [4], [2, 3], [1, 2, 3], [10, 1, 2, 3, 5, 7, 8, 9, 12]].map(
    window.classavgReport.formatRanks);
  var pre = document.createElement("pre"); pre.id = "harness";
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
})();
</script>
"""


def data():
    rng = np.random.default_rng(5)
    pops = rng.permutation(np.arange(10, 10 + K) * 3)
    scores = np.sort(rng.random(K))[::-1].copy()         # a global selector: highest first
    res = rng.uniform(6, 30, K)
    res[4], res[7] = np.inf, np.nan                       # sorted last
    kept = np.ones(K, bool)
    kept[[2, 6, 10]] = False
    return pops, scores, res, kept


def written(tmp_path, **extra):
    pops, scores, res, kept = data()
    yy, xx = np.mgrid[:L, :L] - L // 2
    avg = np.exp(-(xx ** 2 + yy ** 2) / 40.0)[None] * np.ones((K, 1, 1))
    return write_report(tmp_path / "report.html", averages=avg, class_ids=np.arange(K) + 50,
                        populations=pops, scores=scores, resolutions=res, kept=kept, **extra)


def harness_result(tmp_path, path):
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("</body>", HARNESS + "</body>"), encoding="utf-8")
    dom = run_chromium(tmp_path, path.as_uri(), "--dump-dom").stdout
    m = re.search(r'<pre id="harness">(.*?)</pre>', dom, re.S)
    assert m, "the harness did not run:\n" + dom[-2000:]
    return json.loads(m.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


def test_sort_filter_select_and_export(tmp_path):
    pops, scores, res, kept = data()
    ranks = np.arange(1, K + 1)
    got = harness_result(tmp_path, written(tmp_path, pixel_size=2.5))
    assert got["initial"] == got["rank"] == list(ranks)
    # population: largest first; score: in the selection's direction (highest first here)
    assert got["population"] == list(ranks[np.lexsort((ranks, -pops))])
    assert got["population_reversed"] == list(ranks[np.lexsort((ranks, pops))])
    assert got["sort_attr"] == "population-reversed"
    assert got["score"] == list(ranks[np.argsort(-scores, kind="stable")])
    # resolution: best (smallest Angstrom) first, inf next, undefined last
    finite = np.isfinite(res)
    want = list(ranks[finite][np.argsort(res[finite])]) + [5, 8]
    assert got["resolution"] == want
    assert got["resolution"] != got["rank"]
    # kept / rejected filter
    assert got["rejected"] == [3, 7, 11]
    assert got["kept"] == [r for r in ranks if r not in (3, 7, 11)]
    assert got["shown_attr"] == str(K - 3)
    assert got["kept_selection"] == format_ranks(got["kept"]) == "1,2,4-6,8-10,12"
    assert got["all"] == list(ranks)
    # click selection and export
    assert got["text"] == "1,3,5-9" == format_ranks([9, 1, 5, 6, 7, 8, 3])
    assert got["download"] == "selected_classes.txt"
    prefix = "data:text/plain;charset=utf-8,"
    assert got["href"].startswith(prefix)
    assert urllib.parse.unquote(got["href"][len(prefix):]) == "1,3,5-9\n"
    assert got["pressed"] == ["true"] * 7
    # the Python formatter and the page's agree
    samples = [[], [4], [2, 3], [1, 2, 3], [10, 1, 2, 3, 5, 7, 8, 9, 12]]
    assert got["samples"] == [format_ranks(s) for s in samples]
    assert got["samples"][-1] == "1-3,5,7-10,12"


@pytest.mark.parametrize("pixel_size, bar", [(2.5, 20.0), (6.0, 50.0)])
def test_scale_bar_has_the_right_length(tmp_path, pixel_size, bar):
    path = written(tmp_path, pixel_size=pixel_size)
    text = path.read_text(encoding="utf-8")
    assert text.count(f'data-angstrom="{bar:g}"') == K
    assert f"scale bar is {bar:g} &Aring;" in text
    shot = tmp_path / "shot.png"
    run_chromium(tmp_path, path.as_uri(), f"--screenshot={shot}", "--window-size=1280,1400")
    rgb = np.asarray(mpimg.imread(shot))[..., :3] * 255.0
    yellow = (rgb[..., 0] > 200) & (rgb[..., 1] > 170) & (rgb[..., 2] < 90)
    from scipy import ndimage

    labels, n = ndimage.label(yellow)
    widths = [s[1].stop - s[1].start for s in ndimage.find_objects(labels)]
    heights = [s[0].stop - s[0].start for s in ndimage.find_objects(labels)]
    assert n >= K // 2, f"found {n} scale bars"             # the tiles in the window
    want = 128 * bar / (L * pixel_size)                     # tile of 128 CSS px = L pixels
    np.testing.assert_allclose(widths, want, atol=1.0)
    assert set(heights) == {3}


def test_no_pixel_size_no_scale_bar(tmp_path):
    path = written(tmp_path)
    text = path.read_text(encoding="utf-8")
    assert 'class="scalebar"' not in text and "no scale bar" in text
