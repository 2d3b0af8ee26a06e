"""ClassAvgSource: average i belongs to selection_indices[i] on every path."""

import numpy as np
import pytest

from classavg.averaging import Averager2D
from classavg.classification import Class2D
from classavg.pipeline import ClassAvgSource
from classavg.selection import ClassSelector
from classavg.sources import ArrayImageSource


class TableClassifier(Class2D):
    """Returns a fixed neighbour table (and counts calls)."""

    def __init__(self, src, table):
        super().__init__(src)
        self.table = table
        self.calls = 0

    def classify(self):
        self.calls += 1
        return self.table


class LabelAverager(Averager2D):
    """'Averages' row c into a constant image equal to its reference id: exact bookkeeping."""

    def __init__(self, src):
        super().__init__(src)
        self.requested = []

    def average(self, class_indices, class_refl, *, classes=None):
        rows = np.arange(len(class_indices)) if classes is None else np.asarray(classes)
        self.requested.extend(rows.tolist())
        ref = class_indices[rows, 0].astype(self.src.dtype)
        return np.broadcast_to(ref[:, None, None], (rows.size, self.src.L, self.src.L)).copy()


class FixedSelector(ClassSelector):
    """A fixed order, with averages already 'computed' for some classes (as a global
    selector's heap would hold them): its tags say it caches averages."""

    tags = ClassSelector.tags.extend(caches_averages=True)

    def __init__(self, order, cache=None):
        super().__init__()
        self.order = np.asarray(order, dtype=np.int64)
        self.cache = cache or {}

    def _select(self, ci, cr, cd):
        return self.order, np.full(self.order.size, np.nan)

    def cached_average(self, c):
        return self.cache.get(c)

    def cached_alignment(self, c):
        return None


@pytest.fixture
def parts():
    n, m = 12, 4
    src = ArrayImageSource(np.zeros((n, 8, 8), np.float32))
    rng = np.random.default_rng(0)
    ci = np.stack([np.r_[c, rng.choice(np.delete(np.arange(n), c), m - 1, replace=False)]
                   for c in range(n)])
    table = (ci, np.zeros_like(ci, bool), np.sort(rng.random((n, m)), 1) * [0, 1, 1, 1])
    return src, table


@pytest.mark.parametrize("cached", [False, True])
def test_average_i_belongs_to_selection_i(parts, cached):
    src, table = parts
    order = [7, 2, 11, 0, 5]
    # With a cache, some averages come from the selector (as a global selector's heap
    # would serve them): they carry a different marker value (100 + class id).
    cache = {2: np.full((8, 8), 102.0, np.float32), 0: np.full((8, 8), 100.0, np.float32)} \
        if cached else {}
    clf = TableClassifier(src, table)
    avg = LabelAverager(src)
    cas = ClassAvgSource(src, clf, FixedSelector(order, cache), avg)
    assert cas.n == len(order) and clf.calls == 1
    assert np.array_equal(cas.selection_indices, order)
    # any access pattern: all, reversed, a slice, single indices
    for idx in (np.arange(5), np.arange(5)[::-1], slice(1, 4), [3]):
        got = cas.images[idx]
        want = np.asarray(order)[np.arange(5)[idx] if isinstance(idx, slice) else idx]
        expect = [100 + c if c in cache else table[0][c, 0] for c in want]
        assert np.allclose(got[:, 0, 0], expect)
    if cached:
        assert 2 not in avg.requested and 0 not in avg.requested
    assert clf.calls == 1                  # classified once


def test_metadata_and_empty_selection(parts):
    src, table = parts
    cas = ClassAvgSource(src, TableClassifier(src, table), FixedSelector([3, 1]),
                         LabelAverager(src))
    assert list(cas.metadata["class_id"]) == [3, 1]
    assert list(cas.metadata["rank"]) == [1, 2]
    assert list(cas.metadata["reference_particle"]) == [3, 1]
    with pytest.raises(ValueError, match="class_selector must return a non-empty"):
        ClassAvgSource(src, TableClassifier(src, table), FixedSelector([]), LabelAverager(src))


def test_vdm_preset_falls_back_to_reranking_above_its_size_limit(monkeypatch, small_source,
                                                                 caplog):
    import classavg.pipeline.source as source_module
    from classavg.pipeline import DefaultClassAvgSource

    monkeypatch.setattr(source_module, "VDM_MAX_IMAGES", small_source.n - 1)
    cas = DefaultClassAvgSource(small_source, "1.2.0", n_nbor=8, n_classes=5)
    assert cas.classifier.refine is None
    assert "VDM refinement" in caplog.text
    monkeypatch.setattr(source_module, "VDM_MAX_IMAGES", small_source.n)
    assert DefaultClassAvgSource(small_source, "1.2.0", n_nbor=8,
                                 n_classes=5).classifier.refine == "vdm"


@pytest.mark.parametrize("version", ["0.13.2", "1.2.0"])
def test_device_reaches_the_classifier_and_the_averager(numpy_as_cuda, small_source, version):
    from classavg.pipeline import DefaultClassAvgSource

    cas = DefaultClassAvgSource(small_source, version, n_nbor=8, n_classes=5,
                                classifier_options=dict(device="cuda"),
                                averager_options=dict(device="cuda"))
    assert cas.classifier.device == cas.averager.device == "cuda"
    # Every preset's averager runs on the device path end to end (numpy standing in).
    assert cas.images[:2].shape == (2, small_source.L, small_source.L)
