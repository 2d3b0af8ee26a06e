"""Acceptance: the report opens in a headless browser and shows every class average.

Chromium from Debian's packages (``scripts/install_system_tools.sh`` installs it) is driven through
its command line: ``--screenshot`` renders the page to a PNG whose pixels are analysed here, and
``--dump-dom`` returns the DOM after the page loaded, in which the report's own inline script
has recorded how many thumbnails the browser decoded.  The tests skip when no Chromium is found
(set ``CLASSAVG_CHROMIUM`` to use another binary).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from classavg.report import write_report

mpimg = pytest.importorskip("matplotlib.image")

TILE = 128            # displayed thumbnail size in CSS pixels (the report's default)
K, L = 12, 32         # 12 averages of 32 x 32 pixels, shown 4x enlarged


def find_chromium():
    candidates = [os.environ.get("CLASSAVG_CHROMIUM"), shutil.which("chromium"),
                  "/usr/bin/chromium", shutil.which("chromium-browser")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary found (install Debian's chromium: scripts/install_system_tools.sh)")


def run_chromium(tmp_path, url, *extra, timeout=120):
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
           "--force-device-scale-factor=1", "--virtual-time-budget=10000",
           f"--user-data-dir={profile}", *extra, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "HOME": str(tmp_path)})
    assert out.returncode == 0, f"chromium failed ({out.returncode}):\n{out.stderr[-3000:]}"
    return out


def patterned_averages(k, n):
    """Average i: bottom half 0, top-left quarter 1, top-right quarter ``(i + 1) / (k + 1)``.

    Rows are ``y`` with row 0 at the bottom, so on screen each tile must show a black lower
    half, a white upper-left quarter and a grey upper-right quarter whose level encodes i.
    """
    avg = np.zeros((k, n, n), np.float32)
    avg[:, n // 2:, : n // 2] = 1.0
    for i in range(k):
        avg[i, n // 2:, n // 2:] = (i + 1) / (k + 1)
    return avg


def test_screenshot_shows_every_average(tmp_path):
    avg = patterned_averages(K, L)
    path = write_report(tmp_path / "report.html", averages=avg, class_ids=np.arange(K) + 100,
                        populations=np.full(K, 20), scores=np.linspace(2, 1, K),
                        class_distances=np.random.default_rng(0).random((50, 6)),
                        metadata={"version": "test", "preset": "debug"})
    shot = tmp_path / "shot.png"
    run_chromium(tmp_path, path.as_uri(), f"--screenshot={shot}", "--window-size=1280,1100")
    assert shot.is_file() and shot.stat().st_size > 0, "no screenshot was written"

    rgb = np.asarray(mpimg.imread(shot))[..., :3] * 255.0
    assert rgb.shape[:2] == (1100, 1280)
    black = np.all(rgb < 8, axis=-1)
    labels, n = ndimage.label(black)
    boxes = ndimage.find_objects(labels)
    half = TILE // 2
    tiles = []
    for j, (sy, sx) in enumerate(boxes):
        h, w = sy.stop - sy.start, sx.stop - sx.start
        area = np.count_nonzero(labels[sy, sx] == j + 1)
        if abs(w - TILE) <= 2 and abs(h - half) <= 2 and area >= 0.95 * TILE * half:
            tiles.append((sy.start, sx.start))
    # Every average rendered as a lower black half ...
    assert len(tiles) == K, f"found {len(tiles)} rendered thumbnails, expected {K}"
    tiles.sort()                       # reading order: by row, then by column
    rows = sorted({y for y, _ in tiles})
    tiles = sorted(tiles, key=lambda t: (rows.index(t[0]), t[1]))
    levels = []
    for y, x in tiles:
        upper = rgb[y - half + 4: y - 4, x + 4: x + TILE - 4].mean(axis=-1)
        left, right = upper[:, : half - 8], upper[:, half:]
        # ... under a white upper-left quarter (not mirrored top/bottom or left/right) ...
        assert left.min() > 245, f"tile at {(y, x)}: upper-left is not white"
        assert right.max() - right.min() < 4, f"tile at {(y, x)}: upper-right is not flat"
        levels.append(right.mean())
    # ... and a grey upper-right quarter whose level identifies the average: shown in rank
    # order with the pixel values of the PNG (within colour-management rounding).
    want = 255 * (np.arange(K) + 1) / (K + 1)
    np.testing.assert_allclose(levels, want, atol=6)


def test_every_thumbnail_decodes_in_the_browser(tmp_path):
    k = 300
    rng = np.random.default_rng(1)
    path = write_report(tmp_path / "report.html", averages=rng.random((k, 24, 24)),
                        class_ids=np.arange(k), populations=rng.integers(1, 50, k),
                        scores=rng.random(k))
    dom = run_chromium(tmp_path, path.as_uri(), "--dump-dom").stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, "no <body> in the dumped DOM"
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    assert attrs.get("data-images-expected") == str(k)
    assert attrs.get("data-images-loaded") == str(k), attrs
    assert attrs.get("data-images-failed") == "0", attrs
    assert dom.count('class="avg"') == k
    assert f"{k} of {k} averages shown" in dom


def test_a_broken_thumbnail_is_reported(tmp_path):
    """The counter is honest: a corrupt image is counted as failed, not as shown."""
    k = 3
    path = write_report(tmp_path / "report.html", averages=np.random.rand(k, 8, 8),
                        class_ids=np.arange(k), populations=np.ones(k, int))
    text = path.read_text(encoding="utf-8")
    i = text.index('class="avg"')
    j = text.index("base64,", i) + len("base64,")
    path.write_text(text[:j] + "AAAA" + text[j + 40:], encoding="utf-8")
    dom = run_chromium(tmp_path, path.as_uri(), "--dump-dom").stdout
    assert 'data-images-loaded="2"' in dom and 'data-images-failed="1"' in dom
    assert "1 failed to load" in dom
