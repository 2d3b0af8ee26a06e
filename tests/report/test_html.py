"""Tests of the HTML report (``classavg.report.write_report``) and its PNG thumbnails."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

from classavg import ArrayImageSource
from classavg.report import write_report
from classavg.report._images import bin_images, encode_png_gray8, to_uint8

mpimg = pytest.importorskip("matplotlib.image")


# -- helpers ------------------------------------------------------------------------------------
class _Page(HTMLParser):
    """Collects tags with their attributes (enough to inspect the report without bs4)."""

    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def find(self, tag, cls=None):
        return [a for t, a in self.tags
                if t == tag and (cls is None or cls in (a.get("class") or "").split())]


def parse(path):
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def decode_png(src):
    """Pixels (0..255, float) of a ``data:image/png;base64,`` URI, decoded by Pillow."""
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    data = base64.b64decode(src[len(prefix):], validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(mpimg.imread(io.BytesIO(data), format="png")) * 255.0


def averages(k, L, seed=0):
    """Smooth blobs at different positions plus a little noise, (k, L, L) float32."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:L, :L] - L // 2
    angles = np.linspace(0, 2 * np.pi, k, endpoint=False)
    r = L / 6
    imgs = [np.exp(-((xx - r * np.cos(a)) ** 2 + (yy - r * np.sin(a)) ** 2) / (L / 8) ** 2)
            for a in angles]
    return (np.stack(imgs) + 0.05 * rng.standard_normal((k, L, L))).astype(np.float32)


def report(tmp_path, k=6, L=16, **kw):
    args = dict(averages=averages(k, L), class_ids=np.arange(k) * 7 + 3,
                populations=np.arange(k) + 10, scores=np.linspace(1.0, 0.5, k))
    args.update(kw)
    return write_report(tmp_path / "report.html", **args)


# -- PNG encoder and contrast -------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (64, 64), (33, 5)])
def test_png_round_trip(shape):
    rng = np.random.default_rng(1)
    for img in (rng.integers(0, 256, shape, dtype=np.uint8),
                np.tile(np.arange(shape[1], dtype=np.uint8) * 3, (shape[0], 1)),
                np.full(shape, 200, np.uint8)):
        png = encode_png_gray8(img)
        out = mpimg.imread(io.BytesIO(png), format="png")
        np.testing.assert_array_equal(np.rint(out * 255).astype(np.uint8), img)


def test_png_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        encode_png_gray8(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="2-D"):
        encode_png_gray8(np.zeros((2, 4, 4), np.uint8))


def test_to_uint8_contrast_and_flip():
    L = 20
    img = np.zeros((L, L))
    img[0, :] = 1.0                      # row 0 = bottom of the displayed image
    img[5, 3] = 100.0                    # one outlier, clipped by the 99th percentile
    u8 = to_uint8(img[None])[0]
    assert u8.dtype == np.uint8 and u8.shape == (L, L)
    assert np.all(u8[-1] == 255)         # the bottom row of the display is array row 0
    assert np.all(u8[:-1][u8[:-1] != 255] == 0)
    assert u8[L - 1 - 5, 3] == 255       # the outlier saturates instead of squashing the rest


def test_to_uint8_constant_nan_and_per_image_scaling():
    stack = np.stack([np.full((8, 8), 3.0), np.full((8, 8), np.nan),
                      np.arange(64.0).reshape(8, 8), 1000 * np.arange(64.0).reshape(8, 8)])
    stack[2, 0, 0] = np.nan
    u8 = to_uint8(stack)
    assert np.all(u8[0] == 128)          # no contrast: mid grey
    assert np.all(u8[1] == 0)            # all NaN: black, and no warning
    assert u8[2, -1, 0] == 0             # the NaN pixel (row 0 -> last display row) is black
    ramp = np.arange(64.0).reshape(1, 8, 8)
    np.testing.assert_array_equal(u8[3], to_uint8(ramp * 7 + 5)[0])   # scale-invariant
    assert u8[3].min() == 0 and u8[3].max() == 255


def test_bin_images():
    x = np.arange(2 * 6 * 6, dtype=float).reshape(2, 6, 6)
    b = bin_images(x, 3)
    assert b.shape == (2, 2, 2)
    assert b[0, 0, 0] == x[0, :3, :3].mean()
    assert bin_images(x, 1) is x
    assert bin_images(x[:, :5, :5], 2).shape == (2, 2, 2)


# -- the report ---------------------------------------------------------------------------------
def test_self_contained(tmp_path):
    d = np.sort(np.random.default_rng(2).random((40, 5)), axis=1)
    path = report(tmp_path, class_distances=d, metadata={"version": "9.9", "url": "none"})
    text = path.read_text(encoding="utf-8")
    page = parse(path)
    for tag, attrs in page.tags:
        for name in ("src", "href", "srcset", "data", "action", "poster"):
            value = attrs.get(name)
            if value is None:
                continue
            if name == "href":
                assert value.startswith("#"), (tag, value)
            else:
                assert value.startswith("data:"), (tag, value)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert not page.find("link") and not page.find("iframe")
    assert not [a for t, a in page.tags if t == "script" and "src" in a]
    assert "@import" not in text and not re.search(r"url\(", text)


def test_one_png_per_average_of_the_right_size_and_orientation(tmp_path):
    k, L = 5, 12
    avg = np.zeros((k, L, L), np.float32)
    for i in range(k):
        avg[i, : i + 1, :] = 1.0          # the bottom i + 1 rows bright (row 0 is the bottom)
        avg[i, :, -1] = 0.5               # a grey right-most column: no horizontal flip
    path = write_report(tmp_path / "r.html", averages=avg, class_ids=np.arange(k),
                        populations=np.ones(k, int))
    imgs = parse(path).find("img", "avg")
    assert len(imgs) == k
    for i, attrs in enumerate(imgs):
        assert attrs["src"].startswith("data:image/png;base64,")
        assert attrs["width"] == attrs["height"] == str(L)
        px = decode_png(attrs["src"])
        assert px.shape == (L, L)         # 8-bit grayscale
        bright = px[:, 0] > 250
        np.testing.assert_array_equal(np.flatnonzero(bright), np.arange(L - i - 1, L))
        assert np.all(np.abs(px[: L - i - 1, -1] - 128) <= 1)


def test_gallery_lists_ids_populations_scores_in_order(tmp_path):
    k = 7
    cls = np.array([40, 3, 17, 8, 99, 0, 5])
    refs = cls + 1000
    pops = np.array([50, 12, 1, 0, 7, 300, 2])
    scores = np.array([0.91, 0.5, np.nan, -2.5, 1e-6, 3.25, np.inf])
    path = report(tmp_path, k=k, class_ids=cls, reference_ids=refs, populations=pops,
                  scores=scores, ranks=np.arange(k) * 2 + 1)
    page = parse(path)
    tiles = page.find("figure", "tile")
    assert len(tiles) == k
    assert [int(t["data-rank"]) for t in tiles] == list(np.arange(k) * 2 + 1)
    assert [int(t["data-class"]) for t in tiles] == list(cls)
    assert [int(t["data-reference"]) for t in tiles] == list(refs)
    assert [int(t["data-population"]) for t in tiles] == list(pops)
    got = [float(t["data-score"]) if t["data-score"] else np.nan for t in tiles]
    np.testing.assert_array_equal(got, [0.91, 0.5, np.nan, -2.5, 1e-6, 3.25, np.nan])
    text = path.read_text(encoding="utf-8")
    for c, r, p in zip(cls, refs, pops):
        assert f"class {c}<br>ref {r}<br>assigned {p} " in text
    assert "score 0.91<" in text and "score -2.5<" in text and "score 3.25<" in text
    assert text.count("score n/a<") == 2          # NaN and inf
    assert text.index('data-class="40"') < text.index('data-class="3"')
    assert 'data-images-expected="7"' in text


def test_defaults_and_missing_optional_arguments(tmp_path):
    k = 4
    path = write_report(tmp_path / "report.html", averages=averages(k, 16),
                        class_ids=[5, 6, 7, 8], populations=[1, 2, 3, 4])
    page = parse(path)
    tiles = page.find("figure", "tile")
    assert [t["data-rank"] for t in tiles] == ["1", "2", "3", "4"]
    assert [t["data-reference"] for t in tiles] == ["5", "6", "7", "8"]
    assert all(t["data-score"] == "" for t in tiles)
    text = path.read_text(encoding="utf-8")
    assert text.count("score n/a<") == k
    assert "No distance table was given" in text and "No run record was given" in text
    assert len(page.find("img", "plot")) == 1     # score/population vs rank only
    assert "&Aring;/px" not in text               # no pixel size given


def test_all_nan_scores_and_distances(tmp_path):
    k = 3
    d = np.full((10, 4), np.nan)
    path = report(tmp_path, k=k, scores=np.full(k, np.nan), class_distances=d)
    text = path.read_text(encoding="utf-8")
    assert text.count("score n/a<") == k
    assert "No finite neighbour distances" in text


def test_plots_and_header(tmp_path):
    rng = np.random.default_rng(3)
    d = np.sort(rng.random((200, 10)), axis=1)
    d[:, 0] = 0
    d[5, 3:] = np.inf                             # missing neighbours are ignored
    meta = {"version": "0.14.0-test", "preset": "0.14.0",
            "parameters": {"n_nbor": 10, "downsample": None, "sizes": (64, 32)},
            "timings": {"classify": 12.5, "average": 150.0},
            "seeds": {"classifier": np.int64(7)}}
    path = report(tmp_path, k=6, class_distances=d, metadata=meta, pixel_size=1.25,
                  title="my <run> & co")
    page = parse(path)
    text = path.read_text(encoding="utf-8")
    plots = page.find("img", "plot")
    assert len(plots) == 2
    for p in plots:
        assert decode_png(p["src"]).ndim == 3     # RGBA figures
    assert "<title>my &lt;run&gt; &amp; co</title>" in text
    assert "<run>" not in text
    assert "0.14.0-test" in text and "200 classes of 10 members" in text
    assert "1.25 &Aring;/px" in text and "box 20 &Aring;" in text
    assert "<th>n_nbor</th><td>10</td>" in text
    assert "<th>sizes</th><td>64, 32</td>" in text
    assert "<th>classify</th><td>12.5 s</td>" in text
    assert "<th>average</th><td>150 s (2.5 min)</td>" in text
    assert "<th>classifier</th><td>7</td>" in text


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    path = report(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    before = path.read_bytes()
    report(tmp_path, k=3)                         # replaces the existing report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    assert path.read_bytes() != before


class _FailingSource:
    """An ImageSource look-alike whose second batch of images cannot be read."""

    n, L, pixel_size = 600, 8, 2.0

    class _Images:
        def __getitem__(self, key):
            if key.start >= 256:
                raise OSError("disk on fire")
            return np.zeros((key.stop - key.start, 8, 8), np.float32)

    images = _Images()


def test_interrupted_write_keeps_the_old_report(tmp_path):
    path = report(tmp_path)
    before = path.read_bytes()
    with pytest.raises(OSError, match="disk on fire"):
        write_report(path, averages=_FailingSource(), class_ids=np.arange(600),
                     populations=np.ones(600, int))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    with pytest.raises(OSError, match="disk on fire"):
        write_report(tmp_path / "new.html", averages=_FailingSource(),
                     class_ids=np.arange(600), populations=np.ones(600, int))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_image_source_and_memmap_input(tmp_path):
    k, L = 5, 16
    avg = averages(k, L)
    ref = parse(report(tmp_path, k=k, L=L, averages=avg))
    src = ArrayImageSource(avg, pixel_size=2.5)
    p1 = write_report(tmp_path / "src.html", averages=src, class_ids=np.arange(k) * 7 + 3,
                      populations=np.arange(k) + 10, scores=np.linspace(1.0, 0.5, k))
    mm = np.lib.format.open_memmap(tmp_path / "a.npy", mode="w+", dtype=np.float32,
                                   shape=avg.shape)
    mm[:] = avg
    mm.flush()
    p2 = report(tmp_path, k=k, L=L, averages=np.load(tmp_path / "a.npy", mmap_mode="r"))
    want = [a["src"] for a in ref.find("img", "avg")]
    assert [a["src"] for a in parse(p1).find("img", "avg")] == want
    assert [a["src"] for a in parse(p2).find("img", "avg")] == want
    assert "2.5 &Aring;/px" in p1.read_text(encoding="utf-8")


def test_large_images_are_binned(tmp_path):
    path = report(tmp_path, k=2, L=300)
    imgs = parse(path).find("img", "avg")
    assert [decode_png(a["src"]).shape for a in imgs] == [(100, 100)] * 2
    path = report(tmp_path, k=2, L=40, max_thumbnail_px=16)
    assert decode_png(parse(path).find("img", "avg")[0]["src"]).shape == (13, 13)


def test_no_averages(tmp_path):
    path = write_report(tmp_path / "r.html", averages=np.zeros((0, 8, 8)), class_ids=[],
                        populations=[])
    assert not parse(path).find("img", "avg")
    assert "No class averages" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("kw, exc, match", [
    (dict(averages=np.zeros((3, 8, 9))), ValueError, "averages must be an array of shape"),
    (dict(averages=np.zeros((8, 8))), ValueError, "averages must be"),
    (dict(class_ids=np.arange(4)), ValueError, r"class_ids must have shape \(3,\)"),
    (dict(class_ids=[0.5, 1, 2]), ValueError, "class_ids must hold integers"),
    (dict(populations=[1, 2]), ValueError, "populations must have shape"),
    (dict(populations=[1, -2, 3]), ValueError, "populations must be non-negative"),
    (dict(scores=[1.0]), ValueError, "scores must have shape"),
    (dict(reference_ids=np.zeros((3, 1), int)), ValueError, "reference_ids must have shape"),
    (dict(ranks=[1, 2]), ValueError, "ranks must have shape"),
    (dict(class_distances=np.zeros(5)), ValueError, "class_distances must have shape"),
    (dict(pixel_size=-1.0), ValueError, "pixel_size must be"),
    (dict(metadata=[("a", 1)]), TypeError, "metadata must be a dict"),
    (dict(title=3), TypeError, "title must be a string"),
])
def test_bad_arguments_name_the_argument(tmp_path, kw, exc, match):
    args = dict(averages=np.zeros((3, 8, 8)), class_ids=[0, 1, 2], populations=[1, 2, 3])
    args.update(kw)
    with pytest.raises(exc, match=match):
        write_report(tmp_path / "r.html", **args)
    assert not list(tmp_path.iterdir())


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        report(tmp_path / "nope")


def test_no_pyplot_and_lazy_matplotlib(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "import classavg.report as r\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported by classavg.report'\n"
        "r.write_report(sys.argv[1], averages=np.random.rand(3, 8, 8), class_ids=[0, 1, 2],\n"
        "               populations=[1, 2, 3], scores=[1., 2., 3.],\n"
        "               class_distances=np.random.rand(5, 3))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.html")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_two_thousand_averages_of_64(tmp_path):
    """The scale of a real run: 2,000 averages of 64 x 64 give a file of a few MB."""
    k, L = 2000, 64
    path = report(tmp_path, k=k, L=L,
                  class_distances=np.random.default_rng(0).random((5000, 50)))
    imgs = parse(path).find("img", "avg")
    assert len(imgs) == k
    assert decode_png(imgs[-1]["src"]).shape == (L, L)
    assert path.stat().st_size < 20e6


# -- resolution, kept flags, scale bar, selection format -----------------------------------------
@pytest.mark.parametrize("box, bar", [(80, 20), (128, 50), (200, 50), (400, 100), (30, 10),
                                      (1000, 200), (3000, 1000)])
def test_scale_bar_is_round_and_about_a_quarter_box(box, bar):
    from classavg.report import scale_bar_angstrom

    assert scale_bar_angstrom(box) == pytest.approx(bar)
    assert 0.4 < scale_bar_angstrom(box) / (box / 4) < 2.5


@pytest.mark.parametrize("ranks, text", [([], ""), ([3], "3"), ([2, 1], "1,2"),
                                         ([9, 1, 5, 6, 7, 8, 3], "1,3,5-9"),
                                         ([4, 4, 5, 6], "4-6"), ([1, 3, 4, 5, 7, 8], "1,3-5,7,8")])
def test_format_ranks(ranks, text):
    from classavg.report._template import format_ranks

    assert format_ranks(ranks) == text


def test_resolution_and_kept_in_tiles(tmp_path):
    k = 4
    res = np.array([7.25, np.inf, np.nan, 12.0])
    path = report(tmp_path, k=k, resolutions=res, kept=[True, False, True, False],
                  pixel_size=1.5)
    tiles = parse(path).find("figure", "tile")
    assert [t["data-resolution"] for t in tiles] == ["7.25", "Infinity", "", "12.0"]
    assert [t["data-kept"] for t in tiles] == ["1", "0", "1", "0"]
    assert ["rejected" in t["class"] for t in tiles] == [False, True, False, True]
    text = path.read_text(encoding="utf-8")
    assert "res 7.25 &Aring;" in text and "res &infin;" in text and "res n/a" in text
    assert "2 kept, 2 rejected" in text
    assert '<option value="resolution">' in text


def test_defaults_all_kept_and_no_resolution(tmp_path):
    path = report(tmp_path, k=3)
    tiles = parse(path).find("figure", "tile")
    assert all(t["data-kept"] == "1" and t["data-resolution"] == "" for t in tiles)
    assert '<option value="resolution" disabled>' in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("bad, match", [
    (dict(resolutions=np.ones(2)), "resolutions must have shape"),
    (dict(resolutions=-np.ones(3)), "resolutions must be positive"),
    (dict(kept=[1, 0, 1]), "kept must hold booleans"),
    (dict(kept=[True]), "kept must have shape"),
    (dict(ranks=[0, 1, 2]), "1-based"),
])
def test_bad_resolution_kept_ranks(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        report(tmp_path, k=3, **bad)


def test_empty_options_read_as_defaults_not_none():
    """A preset's ``center={}`` / ``junk={}`` means on with the defaults; None means off."""
    from classavg.report.html import _render_value

    assert "defaults" in _render_value({}) and "none" in _render_value(None)
