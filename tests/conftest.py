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


def write_cs_file(src, cs_path, *, project_dir, float_dtype="<f4", prefix=">"):
    """Write the particles of RELION source ``src`` as a cryoSPARC ``.cs`` file, as cryoSPARC
    does (a numpy structured array saved in .npy format, float32 fields, ``blob/path``
    relative to ``project_dir`` with a leading ``>``, 0-based ``blob/idx``); return the path.
    """
    import os
    from pathlib import Path

    import numpy as np

    md = src.metadata
    paths = [Path(p) for p in src.stack_paths]
    rel = [prefix + Path(os.path.relpath(p, project_dir)).as_posix() for p in paths]
    stack = np.asarray(src._stack_id)
    names = np.array([rel[s] for s in stack], dtype="S")
    f = float_dtype
    dtype = [("uid", "<u8"), ("blob/path", names.dtype), ("blob/idx", "<u4"),
             ("blob/shape", "<u4", (2,)), ("blob/psize_A", f), ("blob/sign", f),
             ("ctf/type", "S8"), ("ctf/exp_group_id", "<u4"), ("ctf/accel_kv", f),
             ("ctf/cs_mm", f), ("ctf/amp_contrast", f), ("ctf/df1_A", f), ("ctf/df2_A", f),
             ("ctf/df_angle_rad", f), ("ctf/phase_shift_rad", f), ("ctf/scale", f),
             ("ctf/bfactor", f)]
    arr = np.zeros(src.n, dtype=dtype)
    arr["uid"] = np.arange(src.n, dtype=np.uint64) * 7919 + 10 ** 18
    arr["blob/path"] = names
    arr["blob/idx"] = src._local
    arr["blob/shape"] = src.L
    arr["blob/psize_A"] = src.pixel_size
    arr["blob/sign"] = -1.0
    arr["ctf/type"] = b"spa"
    arr["ctf/exp_group_id"] = md["rlnOpticsGroup"].to_numpy()
    arr["ctf/accel_kv"] = md["rlnVoltage"].to_numpy()
    arr["ctf/cs_mm"] = md["rlnSphericalAberration"].to_numpy()
    arr["ctf/amp_contrast"] = md["rlnAmplitudeContrast"].to_numpy()
    arr["ctf/df1_A"] = md["rlnDefocusU"].to_numpy()
    arr["ctf/df2_A"] = md["rlnDefocusV"].to_numpy()
    arr["ctf/df_angle_rad"] = np.radians(md["rlnDefocusAngle"].to_numpy())
    if "rlnPhaseShift" in md.columns:
        arr["ctf/phase_shift_rad"] = np.radians(md["rlnPhaseShift"].to_numpy())
    arr["ctf/scale"] = 1.0
    if "rlnCtfBfactor" in md.columns:
        arr["ctf/bfactor"] = md["rlnCtfBfactor"].to_numpy()
    cs_path = Path(cs_path)
    cs_path.parent.mkdir(parents=True, exist_ok=True)
    with open(cs_path, "wb") as fh:      # np.save would append ".npy" to a path
        np.save(fh, arr)
    return cs_path


@pytest.fixture
def cs_writer():
    """:func:`write_cs_file`: a RELION source as a cryoSPARC ``.cs`` file."""
    return write_cs_file
