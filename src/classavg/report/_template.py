"""The inline CSS and JavaScript of ``report.html`` (:mod:`classavg.report.html`), and the
selection format the report exports.

The script (plain ES5, no library, works offline):

* counts the thumbnails the browser decoded: ``<body data-images-loaded=...
  data-images-failed=...>`` and "k of k averages shown";
* sorts the gallery (``#sort-key``: rank ascending, population descending, score in the
  direction of the selection -- ``data-score-order`` on the gallery --, resolution ascending;
  ``#sort-reverse`` reverses; classes without a value go last, ties by rank), recorded in
  ``<body data-sort=...>``;
* filters kept / rejected classes (``#filter-kept``; tiles carry ``data-kept="1"/"0"``),
  recorded in ``<body data-filter=... data-shown=...>``;
* selects classes by clicking a tile (or Enter / Space on it), "Select shown", "Clear", and
  exports the selection as ``selected_classes.txt``: the 1-based ranks as comma-separated
  numbers and ranges, e.g. ``1,3,5-9`` (:func:`format_ranks`, the format
  ``classavg select --classes-from`` reads).  The text is also shown in
  ``<output id="selection-text">`` and is the ``data:`` URI of the ``#export`` link.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CSS", "SCRIPT", "format_ranks"]


def format_ranks(ranks) -> str:
    """1-based ranks as the text of ``selected_classes.txt`` (the script's ``formatRanks``).

    Sorted, duplicates dropped, runs of three or more consecutive ranks written as ``a-b``,
    pairs as ``a,b``: ``[9, 1, 5, 6, 7, 8, 3]`` -> ``"1,3,5-9"``; empty -> ``""``.
    """
    r = np.unique(np.asarray(ranks, dtype=np.int64))
    parts, i = [], 0
    while i < r.size:
        j = i
        while j + 1 < r.size and r[j + 1] == r[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{r[i]}-{r[j]}")
        else:
            parts.extend(str(v) for v in r[i:j + 1])
        i = j + 1
    return ",".join(parts)


CSS = """
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
.controls { font-size: 0.85rem; display: flex; flex-wrap: wrap; gap: 0.6rem 1.5rem;
  align-items: center; }
.controls output { font-family: ui-monospace, monospace; }
#export[aria-disabled="true"] { color: #888; pointer-events: none; }
#load-status.bad { color: #a40000; font-weight: 600; }
.gallery { display: flex; flex-wrap: wrap; gap: 8px; }
.tile { margin: 0; padding: 5px; width: calc(var(--tile) + 12px); background: #fff;
  border: 1px solid #d8d8d4; border-radius: 4px; cursor: pointer; }
.tile[hidden] { display: none; }
.tile.selected { border: 1px solid #204a87; box-shadow: 0 0 0 2px #204a87; background: #e8eef8; }
.tile.rejected { background: #f3e3e3; }
.tile.rejected img { opacity: 0.75; }
.frame { position: relative; width: var(--tile); height: var(--tile); }
.tile img { display: block; width: var(--tile); height: var(--tile); background: #000;
  image-rendering: pixelated; }
.scalebar { position: absolute; left: 4%; bottom: 4%; height: 3px; background: #ffd600; }
.tile figcaption { font-size: 11px; line-height: 1.3; margin-top: 3px; color: #333;
  font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.tile .rank { font-weight: 700; color: #000; }
.tile .flag { color: #a40000; font-weight: 600; }
.plots figure { margin: 0 0 1rem; }
.plots img { max-width: 100%; height: auto; background: #fff; border: 1px solid #d8d8d4; }
.plots figcaption { font-size: 0.85rem; color: #555; }
footer { margin-top: 2rem; font-size: 0.8rem; color: #777; }
"""

SCRIPT = """
(function () {
  "use strict";
  var body = document.body;
  var gallery = document.getElementById("tiles");
  var imgs = document.querySelectorAll("#gallery img.avg");
  var status = document.getElementById("load-status");
  var pending = false;
  function update() {
    pending = false;
    var ok = 0, bad = 0;
    for (var i = 0; i < imgs.length; i++) {
      if (imgs[i].complete) { if (imgs[i].naturalWidth > 0) { ok++; } else { bad++; } }
    }
    body.setAttribute("data-images-loaded", String(ok));
    body.setAttribute("data-images-failed", String(bad));
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
  if (!gallery) { return; }

  var tiles = Array.prototype.slice.call(gallery.querySelectorAll("figure.tile"));
  var sortKey = document.getElementById("sort-key");
  var reverse = document.getElementById("sort-reverse");
  var filter = document.getElementById("filter-kept");
  var output = document.getElementById("selection-text");
  var count = document.getElementById("selection-count");
  var link = document.getElementById("export");
  var order = {rank: 1, population: -1, resolution: 1,
               score: gallery.getAttribute("data-score-order") === "asc" ? 1 : -1};
  function value(t, key) {
    var v = parseFloat(t.getAttribute("data-" + key));
    return isNaN(v) ? null : v;
  }
  function sortTiles() {
    var key = sortKey.value, dir = order[key] * (reverse.checked ? -1 : 1);
    var sorted = tiles.slice().sort(function (a, b) {
      var x = value(a, key), y = value(b, key);
      if (x === null || y === null) {
        if (x === null && y !== null) { return 1; }
        if (y === null && x !== null) { return -1; }
      } else if (x !== y) {
        return x < y ? -dir : dir;
      }
      return value(a, "rank") - value(b, "rank");
    });
    for (var i = 0; i < sorted.length; i++) { gallery.appendChild(sorted[i]); }
    body.setAttribute("data-sort", key + (reverse.checked ? "-reversed" : ""));
  }
  function filterTiles() {
    var want = filter.value, shown = 0;
    for (var i = 0; i < tiles.length; i++) {
      var kept = tiles[i].getAttribute("data-kept") === "1";
      var show = want === "all" || (want === "kept") === kept;
      tiles[i].hidden = !show;
      if (show) { shown++; }
    }
    body.setAttribute("data-filter", want);
    body.setAttribute("data-shown", String(shown));
  }
  function formatRanks(ranks) {
    ranks = ranks.slice().sort(function (a, b) { return a - b; });
    var parts = [], i = 0;
    while (i < ranks.length) {
      var j = i;
      while (j + 1 < ranks.length && ranks[j + 1] === ranks[j] + 1) { j++; }
      if (j - i >= 2) { parts.push(ranks[i] + "-" + ranks[j]); }
      else { for (var q = i; q <= j; q++) { parts.push(String(ranks[q])); } }
      i = j + 1;
    }
    return parts.join(",");
  }
  function selectionChanged() {
    var ranks = [];
    for (var i = 0; i < tiles.length; i++) {
      if (tiles[i].classList.contains("selected")) { ranks.push(value(tiles[i], "rank")); }
    }
    var text = formatRanks(ranks);
    output.textContent = text;
    count.textContent = ranks.length + " selected";
    body.setAttribute("data-selected", text);
    if (ranks.length) {
      link.setAttribute("href", "data:text/plain;charset=utf-8," +
                        encodeURIComponent(text + "\\n"));
      link.setAttribute("aria-disabled", "false");
    } else {
      link.removeAttribute("href");
      link.setAttribute("aria-disabled", "true");
    }
  }
  function setSelected(t, on) {
    t.classList.toggle("selected", on);
    t.setAttribute("aria-pressed", on ? "true" : "false");
  }
  tiles.forEach(function (t) {
    t.addEventListener("click", function () {
      setSelected(t, !t.classList.contains("selected"));
      selectionChanged();
    });
    t.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); t.click(); }
    });
  });
  document.getElementById("select-shown").addEventListener("click", function () {
    tiles.forEach(function (t) { if (!t.hidden) { setSelected(t, true); } });
    selectionChanged();
  });
  document.getElementById("select-none").addEventListener("click", function () {
    tiles.forEach(function (t) { setSelected(t, false); });
    selectionChanged();
  });
  sortKey.addEventListener("change", sortTiles);
  reverse.addEventListener("change", sortTiles);
  filter.addEventListener("change", filterTiles);
  sortTiles();
  filterTiles();
  selectionChanged();
  window.classavgReport = {formatRanks: formatRanks, sort: sortTiles, filter: filterTiles};
})();
"""
