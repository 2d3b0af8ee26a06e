"""Dask execution (classavg._parallel): a LocalCluster of 2 workers gives the same neighbour
tables, alignments and class averages as one process, and ``run_classavg`` records it."""

import json

import numpy as np
import pytest

from classavg import Simulation
from classavg._parallel import block_map, dask_client
from classavg.averaging import BFSRAverager2D, FTKAverager2D
from classavg.classification import RIRClass2D
from classavg.sources import ArrayImageSource

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def client():
    with dask_client(n_local=2) as c:
        yield c


@pytest.fixture(scope="module")
def data():
    sim = Simulation(32, 800, snr=0.5, ctf=True, seed=2)
    src = sim.phase_flip().normalize_background()
    md = src.metadata.copy()
    md["rlnCtfDataArePhaseFlipped"] = 1
    return ArrayImageSource(src.images[:], pixel_size=src.pixel_size, metadata=md)


def _square(x, item):
    return x * item ** 2


def test_block_map_keeps_order_and_bounds_in_flight(client):
    items = list(range(25))
    local = list(block_map(_square, items, shared=(3,)))
    remote = list(block_map(_square, items, shared=(3,), client=client, max_in_flight=3))
    assert local == remote == [3 * i * i for i in items]


def _table_agreement(a, b):
    """Fraction of rows whose neighbour sets agree (float summation order may swap ties)."""
    return np.mean([set(x) == set(y) for x, y in zip(a, b)])


@pytest.mark.parametrize("options", [dict(nn="exact"), dict(nn="approximate"),
                                     dict(nn="exact", refine="vdm")])
def test_classification_equals_single_process(client, data, options):
    kw = dict(n_nbor=10, fspca_components=100, bispectrum_components=60, sample_n=600,
              fit_size=500, batch_size=128, seed=0, **options)
    ref = RIRClass2D(data, **kw)
    ci, cr, cd = ref.classify()
    dis = RIRClass2D(data, **kw)
    ci2, cr2, cd2 = dis.classify(client=client)
    np.testing.assert_allclose(dis.coef, ref.coef, rtol=0, atol=1e-5 * np.abs(ref.coef).max())
    np.testing.assert_allclose(dis.features, ref.features, atol=1e-5)
    assert _table_agreement(ci, ci2) >= 0.99
    same = ci == ci2
    assert same.mean() >= 0.99
    assert np.array_equal(cr[same], cr2[same])
    np.testing.assert_allclose(cd, cd2, atol=1e-4)


@pytest.mark.parametrize("averager", [BFSRAverager2D, FTKAverager2D])
def test_averages_equal_single_process(client, data, averager):
    rng = np.random.default_rng(0)
    ci = np.concatenate([np.arange(40)[:, None], rng.integers(0, data.n, (40, 7))], axis=1)
    cr = rng.random(ci.shape) < 0.5
    cr[:, 0] = False
    avg = averager(data, batch_size=8)
    ref = avg.average(ci, cr, classes=np.arange(3, 40))
    ref_al = avg.alignment
    out = avg.average(ci, cr, classes=np.arange(3, 40), client=client)
    np.testing.assert_allclose(out, ref, atol=1e-5 * np.abs(ref).max())
    assert np.array_equal(avg.alignment.classes, ref_al.classes)
    # float32 arithmetic in a different batch composition: equal to ~1e-5 px / rad.
    np.testing.assert_allclose(avg.alignment.rotations, ref_al.rotations, atol=1e-4)
    np.testing.assert_allclose(avg.alignment.shifts, ref_al.shifts, atol=1e-4)
    al = avg.align(ci, cr, classes=[5, 1], client=client)
    assert np.array_equal(al.classes, [5, 1])
    np.testing.assert_allclose(al.rotations, avg.align(ci, cr, classes=[5, 1]).rotations,
                               atol=1e-4)


def test_run_classavg_on_a_cluster(tmp_path, client):
    from classavg.pipeline import run_classavg
    from classavg.sources.simulation import simulate_dataset
    from classavg.io import RelionSource
    from classavg.pipeline import prepare_source, read_class_table

    simulate_dataset(tmp_path / "data", n=400, L=32, snr=1.0, ctf=True, seed=1)
    src, _ = prepare_source(RelionSource(tmp_path / "data" / "particles.star"), phase_flip=True)
    kw = dict(n_nbor=10, n_classes=20, report=False)
    cas, paths = run_classavg(src, tmp_path / "one", **kw)
    cas2, paths2 = run_classavg(src, tmp_path / "dask", client=client, **kw)
    # Dask batches the classification differently, so BLAS sums in other orders: features
    # differ in the last float32 digits, and a class whose repulsion or selection score
    # ties with another's may be swapped for it (as between CPUs: OpenBLAS picks its kernels
    # by CPU).  The rest agrees up to that rounding: the same classes (all but a tie or two),
    # the same averages of each, nearly the same particle decisions.
    one = read_class_table(paths["class_table.npz"])
    two = read_class_table(paths2["class_table.npz"])
    common, i1, i2 = np.intersect1d(cas.selection_indices, cas2.selection_indices,
                                    return_indices=True)
    assert common.size >= 0.9 * cas.n
    a = np.asarray(cas.images[:], np.float64)[i1]
    b = np.asarray(cas2.images[:], np.float64)[i2]
    # float32 averages: the alignment search, the FFT rotation, the CTF-weighted sum and the
    # inverse FFT each sum over the L * L pixels, gamma_n = n * eps per step (Higham 3.1)
    tol = 4 * cas.L ** 2 * np.finfo(np.float32).eps
    rel = np.linalg.norm(a - b, axis=(1, 2)) / np.linalg.norm(a, axis=(1, 2))
    assert rel.max() <= tol
    assert np.mean(one["particle_kept"] == two["particle_kept"]) >= 0.95
    rec = json.loads(paths2["run.json"].read_text())
    assert rec["execution"]["backend"] == "dask" and rec["execution"]["workers"] == 2
    assert json.loads(paths["run.json"].read_text())["execution"] == {"backend": "process",
                                                                   "device": "cpu",
                                                                   "threads": None}


def test_dask_options_are_validated(tmp_path, data):
    from classavg.pipeline import run_classavg
    with pytest.raises(ValueError, match="dask_local must be"):
        run_classavg(data, tmp_path, dask_local=0)
    with pytest.raises(ValueError, match="at most one of"):
        run_classavg(data, tmp_path, scheduler="tcp://localhost:1", dask_local=2)
