"""The contract between the parts (issue 18, defects 9-11): every averager and selector of the
public API, put into a preset by class, runs end to end through ``run_classavg``; the pipeline
wires parts by their tags only."""

import inspect
import json
import logging

import numpy as np
import pytest

import classavg
from classavg import averaging, selection
from classavg._tags import Tags, get_tags
from classavg.pipeline import DefaultClassAvgSource, latest_preset, run_classavg
from classavg.pipeline.source import _make_averager


def concrete(module, base):
    return [getattr(module, name) for name in module.__all__
            if isinstance(getattr(module, name), type) and issubclass(getattr(module, name), base)
            and not inspect.isabstract(getattr(module, name))
            and getattr(module, name) is not averaging.AligningAverager2D]


AVERAGERS = concrete(averaging, averaging.Averager2D)
SELECTORS = concrete(selection, selection.ClassSelector)
#: A quick base preset: no re-ranking or VDM (the parts under test come after them).
QUICK = latest_preset().replace(name="test", classifier=dict(n_nbor=8, rerank=False),
                                averager_options={})


def test_the_public_api_exports_every_part():
    names = {c.__name__ for c in AVERAGERS}
    assert {"BFRAverager2D", "BFSRAverager2D", "ReddyChatterjiAverager2D",
            "BFSReddyChatterjiAverager2D", "FTKAverager2D", "EMAverager2D"} <= names
    assert len(SELECTORS) == 10
    for cls in AVERAGERS + SELECTORS:
        assert getattr(classavg, cls.__name__) is cls


@pytest.mark.parametrize("cls", AVERAGERS, ids=lambda c: c.__name__)
def test_every_averager_runs_end_to_end(tmp_path, small_source, cls):
    preset = QUICK.replace(averager=cls)
    cas, paths = run_classavg(small_source, tmp_path / "out", preset=preset, n_nbor=8,
                              n_classes=3, report=False)
    rec = json.loads(paths["run.json"].read_text())
    assert rec["parameters"]["averager"] == cls.__name__ == rec["preset_config"]["averager"]
    imgs = cas.images[:]
    assert imgs.shape == (cas.n, 32, 32) and np.all(np.isfinite(imgs))
    assert np.abs(imgs).max() > 0


@pytest.mark.parametrize("cls", SELECTORS, ids=lambda c: c.__name__)
def test_every_selector_runs_end_to_end(tmp_path, small_source, cls):
    preset = QUICK.replace(selector=cls)
    cas, paths = run_classavg(small_source, tmp_path / "out", preset=preset, n_nbor=8,
                              n_classes=4, seed=5, report=False)
    rec = json.loads(paths["run.json"].read_text())
    assert rec["parameters"]["selector"] == cls.__name__
    assert 1 <= cas.n <= 4 and np.all(np.isfinite(cas.images[:]))
    if get_tags(cls).random:                    # the pipeline's seed, not a hard-coded one
        assert cas.class_selector.seed == 5 and rec["seeds"][cls.__name__] == 5
    if get_tags(cls).needs_averager:
        assert cas.class_selector.averager is cas.averager


@pytest.mark.parametrize("cls", AVERAGERS, ids=lambda c: c.__name__)
def test_device_goes_only_to_parts_that_take_it(small_source, cls, caplog):
    """Before: every averager got ``device=`` and FTK, EM and Reddy-Chatterji failed with
    TypeError; now the tags decide and the others warn that they run on the CPU."""
    preset = QUICK.replace(averager=cls)
    with caplog.at_level(logging.WARNING):
        avg = _make_averager(preset, small_source, "cuda" if not get_tags(cls).device
                             else "cpu", None)
    assert type(avg) is cls
    if not get_tags(cls).device:
        assert "runs on the CPU" in caplog.text


def test_ctf_keywords_are_declared_not_injected():
    """Every aligning averager declares the CTF keywords itself (no signature rewriting)."""
    for cls in AVERAGERS:
        params = inspect.signature(cls.__init__).parameters
        assert get_tags(cls).ctf_correction == all(
            k in params for k in ("ctf_correction", "image_source", "wiener_snr")), cls
        assert get_tags(cls).device == ("device" in params), cls
        assert "__wrapped__" not in vars(cls.__init__)


def test_tags_are_declared_on_the_base_classes():
    for base in (classavg.Class2D, selection.ClassSelector, averaging.Averager2D):
        assert isinstance(base.tags, Tags)
    assert get_tags(classavg.RIRClass2D).random and get_tags(classavg.RIRClass2D).client
    assert not get_tags(averaging.EMAverager2D).client      # its noise estimates stay local
    with pytest.raises(TypeError, match="must derive from"):
        get_tags(object())


def test_parts_without_tags_are_refused(small_source):
    class NotASelector:
        def select(self, ci, cr, cd):
            return np.arange(3)

    with pytest.raises(TypeError, match="class_selector must be a ClassSelector"):
        DefaultClassAvgSource(small_source, QUICK, class_selector=NotASelector())


def test_presets_hold_classes():
    preset = latest_preset()
    assert issubclass(preset.averager, averaging.Averager2D)
    assert issubclass(preset.selector, selection.ClassSelector)
    with pytest.raises(TypeError, match="averager must be a subclass of Averager2D"):
        preset.replace(averager="BFSRAverager2D")
    assert preset.to_dict()["averager"] == preset.averager.__name__
