"""Array backends (classavg._backend): the kernels written against ``xp`` give the same
results through the device code path; "cuda" is validated and needs CuPy."""

import importlib.util

import numpy as np
import pytest

from classavg._backend import array_module, check_device, fft, namespace_of, to_host

HAS_CUPY = importlib.util.find_spec("cupy") is not None


def test_cpu_namespace_and_helpers():
    assert array_module("cpu") is np
    x = np.arange(8.0)
    assert namespace_of(x) is np
    assert to_host(x) is x
    np.testing.assert_allclose(fft("irfft", np.fft.rfft(x), n=8), x, atol=1e-12)


def test_device_validation():
    assert check_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device must be one of"):
        check_device("tpu")
    if not HAS_CUPY:
        with pytest.raises(ImportError, match="classavg\\[gpu\\]"):
            check_device("cuda")


def test_rir_rejects_a_device_with_a_dask_client():
    from classavg.classification import RIRClass2D
    from classavg.sources import ArrayImageSource

    src = ArrayImageSource(np.random.default_rng(0).normal(size=(50, 16, 16)).astype("f4"))
    clf = RIRClass2D(src, n_nbor=5, fspca_components=20, bispectrum_components=10,
                     sample_n=50)
    clf.device = "cuda"                              # as if CuPy were installed
    with pytest.raises(ValueError, match="device must be 'cpu' with a Dask client"):
        clf.fit_features(client=object())


@pytest.mark.skipif(not HAS_CUPY, reason="CuPy not installed (GPU backend)")
def test_gpu_classification_matches_cpu():
    # Runs only on a machine with CuPy, cuFINUFFT and a GPU.
    from classavg import Simulation
    from classavg.classification import RIRClass2D
    from classavg.sources import ArrayImageSource

    sim = Simulation(32, 600, snr=0.5, seed=1)
    src = ArrayImageSource(sim.normalize_background().images[:])
    kw = dict(n_nbor=10, fspca_components=100, bispectrum_components=60, sample_n=600, seed=0)
    ci, _, cd = RIRClass2D(src, **kw).classify()
    ci2, _, cd2 = RIRClass2D(src, device="cuda", **kw).classify()
    assert np.mean(ci == ci2) > 0.98
    np.testing.assert_allclose(cd, cd2, atol=1e-3)


@pytest.mark.skipif(not HAS_CUPY, reason="CuPy not installed (GPU backend)")
def test_gpu_alignment_matches_cpu():
    # Runs only on a machine with CuPy and a GPU: the averagers' search on the device.
    from classavg import Simulation
    from classavg.averaging import BFSRAverager2D
    from classavg.sources import ArrayImageSource

    sim = Simulation(32, 200, snr=0.5, max_shift=1, seed=2)
    src = ArrayImageSource(sim.images[:])
    rng = np.random.default_rng(0)
    ci = np.stack([rng.choice(200, 10, replace=False) for _ in range(20)])
    cr = rng.random(ci.shape) < 0.5
    cr[:, 0] = False
    cpu, gpu = BFSRAverager2D(src), BFSRAverager2D(src, device="cuda")
    cpu.average(ci, cr)
    gpu.average(ci, cr)
    # Float32 on both sides in another order: a near-tie of two grid maxima may flip.
    diff = np.abs(np.angle(np.exp(1j * (gpu.alignment.rotations - cpu.alignment.rotations))))
    assert np.mean(diff < np.radians(0.05)) > 0.97
    assert np.mean(np.all(np.abs(gpu.alignment.shifts - cpu.alignment.shifts) < 0.01, -1)) > 0.97


@pytest.mark.parametrize("method", ["dense", "nufft"])
def test_device_code_path_matches_cpu(numpy_as_cuda, method):
    from classavg import Simulation
    from classavg.basis import FourierBesselBasis2D
    from classavg.classification import RIRClass2D
    from classavg.sources import ArrayImageSource

    sim = Simulation(32, 400, snr=1.0, seed=3)
    src = ArrayImageSource(sim.normalize_background().images[:])
    kw = dict(n_nbor=8, fspca_components=60, bispectrum_components=40, sample_n=400, seed=0)
    # Both expansions on the device path (the dense one is the default at this size).
    ref = RIRClass2D(src, basis=FourierBesselBasis2D(32, bandlimit=0.5, method=method), **kw)
    ci, cr, cd = ref.classify()
    dev = RIRClass2D(src, device="cuda",
                     basis=FourierBesselBasis2D(32, bandlimit=0.5, method=method), **kw)
    ci2, cr2, cd2 = dev.classify()
    # Tolerances from the float32 rounding bound of a sum of n products, gamma_n = n * eps
    # (Higham, Accuracy and Stability of Numerical Algorithms, 3.1), not from one CPU: BLAS
    # kernels (OpenBLAS Haswell vs. Zen on AMD EPYC, MKL on Intel) sum in other orders.
    # The coefficients are sums over the L * L pixels; every feature (unit-norm rows) sums
    # products of the K coefficients, at most K**2 of them (the bispectrum), and carries to
    # first order the coefficients' own relative error three times over (a bispectrum term
    # is a product of three coefficients); the distances of unit vectors differ by at most
    # twice their features' error.
    eps = np.finfo(np.float32).eps
    tol_coef = src.L ** 2 * eps * np.abs(ref.coef).max()
    tol_feat = ((3 * src.L ** 2 + ref.coef.shape[1] ** 2) * eps
                * np.linalg.norm(ref.features, axis=1).max())
    np.testing.assert_allclose(dev.coef, ref.coef, atol=tol_coef)
    np.testing.assert_allclose(dev.features, ref.features, atol=tol_feat)
    assert np.mean(ci == ci2) > 0.99
    np.testing.assert_allclose(cd, cd2, atol=2 * tol_feat)
