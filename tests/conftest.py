"""Fixtures shared by the test packages."""

import pytest


@pytest.fixture
def numpy_as_cuda(monkeypatch):
    """Run the device="cuda" code path with numpy (and finufft) standing in for CuPy and
    cuFINUFFT: checks the device-side logic (uploads, shapes, dtypes, the per-device caches)
    on any machine; the CuPy tests in ``tests/test_backend.py`` check the real GPU where there
    is one.  The averagers' kernels see a stand-in namespace that is not numpy itself, so
    their non-numpy branches run too."""
    import sys
    import types

    import finufft
    import numpy as np

    import classavg._backend as backend
    import classavg.averaging.bfr as bfr
    import classavg.averaging.bfsr as bfsr
    import classavg.basis.dense as dense
    import classavg.basis.fourier_bessel as fb
    import classavg.classification.bispectrum as bs
    import classavg.classification.neighbors as nb
    import classavg.classification.rerank as rr

    def fake(device):
        return np
    for mod in (backend, dense, fb, bs, nb, rr, bfr, bfsr):
        monkeypatch.setattr(mod, "array_module", fake)
    stand_in = types.ModuleType("numpy_stand_in")
    stand_in.__getattr__ = lambda name: getattr(np, name)
    for mod in (bfr, bfsr):
        monkeypatch.setattr(mod, "namespace_of", lambda x: stand_in)
    monkeypatch.setitem(sys.modules, "cufinufft", types.SimpleNamespace(Plan=finufft.Plan))
