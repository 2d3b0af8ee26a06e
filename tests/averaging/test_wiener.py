"""CTF-aware class averages (``ctf_correction="wiener"`` / ``"phase_flip"``).

Data: one class of a simulated molecule (64 x 64, 4 A/pixel), every member the exact view of
the reference (half of them from the opposite side, i.e. mirrored) with a random in-plane
rotation and a random shift (<= 2 px), the CTFs of 7 defocus groups (1.0-2.5 um, random
astigmatism), aligned with the ground truth (a tiny averager whose ``_align_batch`` returns
it), so that only the stacking step is tested.

Stated tolerances (measured in development: Wiener correlation 1.000, FRC-0.5 resolution
2.3 px on 40 members; phase flip 0.61 and 3.0 px):

* the Wiener average of a clean class recovers the clean CTF-free projection: masked
  correlation > 0.98 and FRC-0.5 resolution < 2.6 px (Nyquist is 2 px);
* the mean of the phase-flipped members keeps the mean |CTF| as a filter: its correlation is
  < 0.8, at least 0.2 below the Wiener average.
"""

import numpy as np
import pytest

import classavg.averaging.wiener as W
from classavg.averaging import (
    AligningAverager2D,
    BFRAverager2D,
    BFSRAverager2D,
    MedianImageStacker,
    transformed_defocus_angles,
)
from classavg.classification.ctf_correction import is_phase_flipped
from classavg.metrics import class_average_fidelity, class_true_alignment
from classavg.sources import ArrayImageSource, resolve_chain
from classavg.sources.ctf import evaluate_ctf
from classavg.sources._projection import _uniform_rotations
from classavg.sources.simulation import Simulation


class TrueAligner(AligningAverager2D):
    """Reports the true alignment (rows of ``truth``): tests the stacking step alone."""

    def __init__(self, src, truth, **kwargs):
        super().__init__(src, **kwargs)
        self.truth = truth

    def _align_batch(self, batch):
        r = batch.rows
        return self.truth.rotation[r], self.truth.shift[r], np.ones(batch.indices.shape)


def same_view_classes(k=1, m=40, *, snr=None, ctf=True, max_shift=2.0, seed=0, L=64):
    """k classes of m members with exactly the reference's view; image i in defocus group
    i % 7.  Returns (sim, class_indices, truth, clean references)."""
    rng = np.random.default_rng(seed)
    R = _uniform_rotations(k, seed + 100)
    b = rng.uniform(-np.pi, np.pi, (k, m))
    Rz = np.zeros((k, m, 3, 3))
    Rz[..., 0, 0], Rz[..., 0, 1] = np.cos(b), -np.sin(b)
    Rz[..., 1, 0], Rz[..., 1, 1] = np.sin(b), np.cos(b)
    Rz[..., 2, 2] = 1.0
    mirror = rng.random((k, m)) < 0.5
    mirror[:, 0] = False
    Rz[:, 0] = np.eye(3)
    F = np.diag([1.0, -1.0, -1.0])
    rots = np.einsum("kij,kmjl->kmil", R, np.where(mirror[..., None, None], F @ Rz, Rz))
    r = max_shift * np.sqrt(rng.uniform(0, 1, (k, m)))
    ph = rng.uniform(0, 2 * np.pi, (k, m))
    off = np.stack([r * np.cos(ph), r * np.sin(ph)], -1)
    off[:, 0] = 0.0
    n = k * m
    sim = Simulation(L, n, rotations=rots.reshape(n, 3, 3), offsets=off.reshape(n, 2),
                     snr=snr, ctf=ctf, seed=seed)
    ci = np.arange(n).reshape(k, m)
    truth = class_true_alignment(sim.rotations, ci, sim.offsets)
    return sim, ci, truth, sim.clean_images(ci[:, 0], shifted=True)


@pytest.fixture(scope="module")
def clean_class():
    return same_view_classes()


def fidelity(avg, clean):
    f = class_average_fidelity(avg, clean)
    return f["median_correlation"], f["median_resolution"]


# -- recovery of the CTF-free projection ---------------------------------------------------------
def test_wiener_recovers_ctf_free_projection(clean_class):
    sim, ci, truth, clean = clean_class
    assert len(np.unique(sim.defocus[ci[0]])) == 7
    avg = TrueAligner(sim.phase_flip(), truth, ctf_correction="wiener").average(ci, truth.mirror)
    corr, res = fidelity(avg, clean)
    assert corr > 0.98 and res < 2.6, (corr, res)


def test_phase_flip_keeps_the_ctf_envelope(clean_class):
    sim, ci, truth, clean = clean_class
    pf = sim.phase_flip()
    w = fidelity(TrueAligner(pf, truth, ctf_correction="wiener").average(ci, truth.mirror),
                 clean)
    flip = fidelity(TrueAligner(pf, truth, ctf_correction="phase_flip").average(
        ci, truth.mirror), clean)
    base = fidelity(TrueAligner(pf, truth).average(ci, truth.mirror), clean)  # current default
    for corr, _ in (flip, base):
        assert corr < 0.8 and w[0] - corr > 0.2, (w, flip, base)
    assert w[1] < min(flip[1], base[1])


def test_raw_and_phase_flipped_sources_agree(clean_class):
    """src = the raw simulation, src = its phase flip (parent used), or an explicit
    image_source: the same average."""
    sim, ci, truth, _ = clean_class
    a = TrueAligner(sim, truth, ctf_correction="wiener")
    b = TrueAligner(sim.phase_flip(), truth, ctf_correction="wiener")
    raw = ArrayImageSource(sim.images[:], pixel_size=sim.pixel_size, metadata=sim.metadata)
    flipped = ArrayImageSource(sim.phase_flip().images[:], pixel_size=sim.pixel_size)
    c = TrueAligner(flipped, truth, ctf_correction="wiener", image_source=raw)
    assert a.image_source is sim and b.image_source is sim and c.image_source is raw
    out = [x.average(ci, truth.mirror) for x in (a, b, c)]
    scale = np.abs(out[0]).max()
    assert np.abs(out[1] - out[0]).max() < 1e-4 * scale
    assert np.abs(out[2] - out[0]).max() < 1e-4 * scale


def test_phase_flip_anywhere_in_the_chain(clean_class):
    """README's order ``phase_flip().normalize_background()`` (issue 18, defect 10: it used to
    fall back to plain averages): the images averaged are the chain replayed without the flip,
    the same average as from ``normalize_background()`` of the raw images."""
    sim, ci, truth, _ = clean_class
    a = TrueAligner(sim.phase_flip().normalize_background(), truth, ctf_correction="wiener")
    assert resolve_chain(a.image_source).n_flips == 0 and not a.image_source_flipped
    b = TrueAligner(sim.normalize_background(), truth, ctf_correction="wiener")
    np.testing.assert_array_equal(a.image_source.images[:3], b.image_source.images[:3])
    x, y = a.average(ci, truth.mirror), b.average(ci, truth.mirror)
    assert np.abs(x - y).max() <= 1e-6 * np.abs(y).max()      # the same computation
    # an explicit phase-flipped image_source is taken without its flip too
    assert TrueAligner(sim, truth, ctf_correction="wiener",
                       image_source=sim.phase_flip()).image_source is sim


def test_data_phase_flipped_on_disk(clean_class):
    """``rlnCtfDataArePhaseFlipped = 1`` (issue 18, defect 10): no raw images exist, so the
    flipped members are combined with |CTF|, exact for ``sign(H) (H X + N)``.  Tolerance:
    the Wiener resolution bound of this module (< 2.6 px).  The same pixels read as raw
    (the label ignored, as before) lose more than a pixel of resolution."""
    sim, ci, truth, clean = clean_class
    pf = sim.phase_flip().images[:]
    md = sim.metadata.copy()
    md["rlnCtfDataArePhaseFlipped"] = 1
    disk = ArrayImageSource(pf, pixel_size=sim.pixel_size, metadata=md)
    a = TrueAligner(disk, truth, ctf_correction="wiener")
    assert a.image_source is disk and a.image_source_flipped
    assert a.ctf_options["image_source_flipped"] is True
    assert is_phase_flipped(disk)                  # the classifier reads the same label
    corr, res = fidelity(a.average(ci, truth.mirror), clean)
    assert corr > 0.98 and res < 2.6
    unlabelled = ArrayImageSource(pf, pixel_size=sim.pixel_size, metadata=sim.metadata)
    _, res_raw = fidelity(TrueAligner(unlabelled, truth, ctf_correction="wiener").average(
        ci, truth.mirror), clean)
    assert res_raw > res + 1.0


def test_wiener_with_bfsr_alignment(clean_class):
    """The estimated alignment (BFSR on the phase-flipped images) is good enough."""
    sim, ci, truth, clean = clean_class
    avg = BFSRAverager2D(sim.phase_flip(), radius=2, ctf_correction="wiener").average(
        ci, truth.mirror)
    corr, res = fidelity(avg, clean)
    assert corr > 0.97 and res < 3.0, (corr, res)


# -- CTF of transformed members ------------------------------------------------------------------
def test_transformed_defocus_angles():
    a = np.array([10.0, 10.0, -30.0])
    out = transformed_defocus_angles(a, [False, True, True], np.deg2rad([90.0, 90.0, 0.0]))
    np.testing.assert_allclose(out, [100.0, 80.0, 30.0])


@pytest.mark.parametrize("refl", [False, True])
@pytest.mark.parametrize("quarter_turns", [0, 1, 3])
def test_rotated_mirrored_ctf_is_the_ctf_on_the_transformed_grid(refl, quarter_turns):
    """An image transformed by (mirror, rotation) has the spectrum F'(k) = F(Q Rot(-c) k);
    for rotations by multiples of 90 degrees on an odd grid Q Rot(-c) permutes the grid
    points, so the transformed CTF must be that permutation of the original one."""
    L, px = 33, 3.0
    kw = dict(defocus_u=21000.0, defocus_v=15000.0, voltage=300.0, cs=2.7,
              amplitude_contrast=0.1)
    angle = 27.0
    H = evaluate_ctf(L, px, defocus_angle=angle, **kw)[0]         # [ky, kx], centred
    c = quarter_turns * np.pi / 2
    Ht = evaluate_ctf(L, px, defocus_angle=transformed_defocus_angles(angle, refl, c),
                      **kw)[0]
    # expected: H at q = Q Rot(-c) k, k = (kx, ky) the grid of Ht
    g = np.arange(L) - L // 2
    ky, kx = np.meshgrid(g, g, indexing="ij")
    ca, sa = np.rint(np.cos(c)), np.rint(np.sin(c))
    qx = (ca * kx + sa * ky).astype(int)
    qy = (-sa * kx + ca * ky).astype(int)
    if refl:
        qy = -qy
    expected = H[qy + L // 2, qx + L // 2]
    np.testing.assert_allclose(Ht, expected, atol=1e-9)
    if (refl or quarter_turns % 2) and not np.allclose(H, expected):
        assert not np.allclose(Ht, H, atol=1e-3)                # the transform matters


def test_strong_astigmatism_needs_the_transformed_ctf(monkeypatch):
    """Members with 3000 A of astigmatism: the Wiener average recovers the projection only
    when each CTF is rotated (and mirrored) with its member."""
    ctf = dict(defocus_u=np.tile([20000.0, 23000, 26000, 14000, 17000], 6),
               defocus_v=np.tile([17000.0, 20000, 23000, 11000, 14000], 6),
               defocus_angle=np.tile([0.0, 35.0, 70.0, 110.0, 150.0], 6))
    rng = np.random.default_rng(3)
    n = 30
    b = rng.uniform(-np.pi, np.pi, n)
    b[0] = 0
    R0 = _uniform_rotations(1, 7)[0]
    Rz = np.zeros((n, 3, 3))
    Rz[:, 0, 0], Rz[:, 0, 1], Rz[:, 1, 0], Rz[:, 1, 1] = np.cos(b), -np.sin(b), np.sin(b), \
        np.cos(b)
    Rz[:, 2, 2] = 1
    mirror = rng.random(n) < 0.5
    mirror[0] = False
    F = np.diag([1.0, -1.0, -1.0])
    rots = R0 @ np.where(mirror[:, None, None], F @ Rz, Rz)
    sim = Simulation(64, n, rotations=rots, ctf=ctf, seed=3)
    ci = np.arange(n)[None]
    truth = class_true_alignment(sim.rotations, ci)
    truth = truth._replace(shift=np.zeros(ci.shape + (2,)))
    clean = sim.clean_images(ci[:, 0])
    good = fidelity(TrueAligner(sim, truth, ctf_correction="wiener").average(ci, truth.mirror),
                    clean)
    monkeypatch.setattr(W, "transformed_defocus_angles", lambda a, refl, rot: np.asarray(a))
    bad = fidelity(TrueAligner(sim, truth, ctf_correction="wiener").average(ci, truth.mirror),
                   clean)
    assert good[0] > 0.98 and good[1] < 2.6, good
    # measured (RELION-sign CTF): good corr 1 - 7e-11, FRC 2.0 px; untransformed angles
    # corr 1 - 4e-5, FRC 2.13 px
    assert bad[1] > good[1] + 0.05 and (1 - bad[0]) > 100 * (1 - good[0]), (good, bad)


# -- noise ----------------------------------------------------------------------------------------
def test_noisy_class_wiener_beats_phase_flip():
    sim, ci, truth, clean = same_view_classes(k=4, m=40, snr=1 / 8, seed=5)
    w = fidelity(TrueAligner(sim, truth, ctf_correction="wiener").average(ci, truth.mirror),
                 clean)
    p = fidelity(TrueAligner(sim, truth, ctf_correction="phase_flip").average(
        ci, truth.mirror), clean)
    # measured: Wiener 0.996, phase flip 0.79 (the CTF envelope and zeros remain)
    assert w[0] > 0.95 and w[0] - p[0] > 0.1, (w, p)


def test_inverse_snr_estimate():
    """Members X_i = H_i S + N_i with known noise power and the signal's ring powers."""
    rng = np.random.default_rng(1)
    L, m = 64, 40
    ring, w = W.ring_indices(L)
    shape = (L, L // 2 + 1)
    p_s = 10.0 ** (2 - ring / 6.0)                                # falls with frequency
    S = np.sqrt(p_s / 2) * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    H = np.cos(rng.uniform(0, 2 * np.pi, (m,) + shape))
    N = np.sqrt(0.5) * (rng.standard_normal((m,) + shape) + 1j * rng.standard_normal((m,) + shape))
    X = H * S + N                                                  # P_N = 1
    num, den = (H * X).sum(0), (H * H).sum(0)
    inv = W.inverse_snr(num[None], den[None], (np.abs(X) ** 2).sum(0)[None], m)[0]
    realised = np.bincount(ring.ravel(), (w * np.abs(S) ** 2).ravel()) / np.bincount(
        ring.ravel(), w.ravel())                                  # P_S of this S per ring
    ok = np.arange(3, 17)                                         # SNR 10^1.5 .. 10^-0.7
    np.testing.assert_allclose(np.log10(inv[ok]), -np.log10(realised[ok]), atol=0.1)


def test_uncapped_wiener_suppresses_pure_noise(monkeypatch):
    """Members without signal: with MAX_REGULARIZATION = None the SNR estimate finds no
    signal at most rings, so the (minimum mean-square error) Wiener average is much weaker
    than the mean of the phase-flipped noise."""
    sim, ci, truth, _ = same_view_classes(k=2, m=40, seed=9)
    rng = np.random.default_rng(0)
    noise = ArrayImageSource(rng.standard_normal((sim.n, 64, 64)), metadata=sim.metadata,
                             pixel_size=sim.pixel_size, dtype=np.float32)
    p = TrueAligner(noise, truth, ctf_correction="phase_flip").average(ci, truth.mirror)
    monkeypatch.setattr(W, "MAX_REGULARIZATION", None)
    w = TrueAligner(noise, truth, ctf_correction="wiener").average(ci, truth.mirror)
    assert np.linalg.norm(w) < 0.5 * np.linalg.norm(p)


def test_constant_snr_and_small_classes(clean_class):
    sim, ci, truth, clean = clean_class
    a = TrueAligner(sim, truth, ctf_correction="wiener", wiener_snr=100.0)
    corr, _ = fidelity(a.average(ci, truth.mirror), clean)
    assert corr > 0.9
    first = truth._replace(rotation=truth.rotation[:, :1], shift=truth.shift[:, :1])
    one = TrueAligner(sim, first, ctf_correction="wiener").average(ci[:, :1], truth.mirror[:, :1])
    assert one.shape == (1, 64, 64) and np.all(np.isfinite(one))


def test_phase_flip_with_robust_stacker(clean_class):
    sim, ci, truth, clean = clean_class
    med = TrueAligner(sim, truth, ctf_correction="phase_flip",
                      image_stacker=MedianImageStacker()).average(ci, truth.mirror)
    mean = TrueAligner(sim, truth, ctf_correction="phase_flip").average(ci, truth.mirror)
    assert np.corrcoef(med.ravel(), mean.ravel())[0, 1] > 0.95


# -- options, errors and records ------------------------------------------------------------------
def test_source_without_ctf_raises():
    sim = Simulation(32, 10, seed=0)
    with pytest.raises(ValueError, match="needs CTF parameters.*rlnDefocusU"):
        BFRAverager2D(sim, ctf_correction="wiener")
    with pytest.raises(ValueError, match="needs CTF parameters"):
        BFSRAverager2D(sim, ctf_correction="phase_flip")


def test_option_errors():
    sim = Simulation(32, 10, ctf=True, seed=0)
    with pytest.raises(ValueError, match="ctf_correction must be one of"):
        BFRAverager2D(sim, ctf_correction="flip")
    with pytest.raises(ValueError, match="image_source must have the size"):
        BFRAverager2D(sim, ctf_correction="wiener",
                      image_source=Simulation(32, 11, ctf=True, seed=0))
    with pytest.raises(ValueError, match="wiener_snr is used only"):
        BFRAverager2D(sim, ctf_correction="phase_flip", wiener_snr=1.0)
    with pytest.raises(ValueError, match="wiener_snr must be"):
        BFRAverager2D(sim, ctf_correction="wiener", wiener_snr=0.0)
    with pytest.raises(ValueError, match="image_source is used only"):
        BFRAverager2D(sim, image_source=sim)
    with pytest.raises(ValueError, match="linear"):
        BFRAverager2D(sim, ctf_correction="wiener", image_stacker=MedianImageStacker())


def test_options_are_recorded():
    sim = Simulation(32, 10, ctf=True, seed=0)
    plain = BFSRAverager2D(sim.phase_flip(), radius=1)
    assert plain.ctf_correction is None and "ctf_correction" not in repr(plain)
    a = BFSRAverager2D(sim.phase_flip(), radius=1, ctf_correction="wiener", wiener_snr=2.0)
    assert a.radius == 1 and a.ctf_correction == "wiener" and a.image_source is sim
    assert repr(a).endswith("radius=1, n_angles=360, ctf_correction='wiener', wiener_snr=2)")
    assert a.ctf_options == {"ctf_correction": "wiener", "wiener_snr": 2.0,
                             "image_source": repr(sim), "image_source_flipped": False}
    b = BFRAverager2D(sim, ctf_correction="phase_flip")
    assert "ctf_correction='phase_flip'" in repr(b)
    assert b.set_ctf_correction(None) is b and b.ctf_correction is None
    assert b.image_source is None
    import inspect
    assert "ctf_correction" in inspect.signature(BFRAverager2D).parameters
