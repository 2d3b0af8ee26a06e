"""How far can the final ranking of the VDM refinement go?  Re-scoring studies at low SNR.

Simulates the built-in molecule (64 x 64, CTF with 7 defocus groups, phase flipped, white noise
at ``--snr``), fits the CTF-corrected steerable-PCA features of :class:`RIRClass2D`, takes the
bispectrum candidates, and ranks the candidates of :func:`vdm_refine` by different scores.
Each line prints the fraction of the 49 neighbours within 10 degrees (``classavg.metrics``).

Variants (``--variants``; all by default):

``default``
    ``vdm_refine`` as shipped: ``(affinity + s_ij) / 2`` over the 1.5 n_nbor candidates of
    highest affinity.
``graph``
    20 graph edges and 96 eigenvectors instead of 10 and 48.
``hubness``
    Cross-domain similarity local scaling (Conneau et al., "Word translation without parallel
    data", ICLR 2018): the score of candidate j minus ``gamma`` times j's mean score over its
    own best candidates, which penalises images that are close to everything.
``two_hop``
    The full-rank connection affinity ``|(S^p)_ij|`` (p = 2, 4; 20 edges) from sparse matrix
    powers, beside the truncated-eigenvector affinity.
``neighbour_average``
    The correlation of neighbour-averaged (denoised) coefficients, beside the default score.
``references``
    A soft assignment of every image to R references (the aligned averages of the VDM
    neighbourhoods of R random images), refined by a few expectation-maximisation passes
    (maximum-likelihood 2D classification in the manner of Scheres et al., J. Mol. Biol. 348,
    139 (2005), in the steerable-PCA space); the candidates are ranked by the overlap of the
    two images' assignment profiles, alone and beside the default score.
``oracle``
    The candidates ordered by the correlation of the *clean* images (an upper bound on what
    any re-scoring of the same candidates can reach).
``genie`` (not run by default: ~4.5 minutes at n = 10,000)
    What a perfect 3D model would allow: every noisy image matched (rotational correlation of
    Fourier-Bessel coefficients, band limit 0.5) against clean templates at all n true views,
    filtered by the image's own |CTF|; its view estimated as the best template's, and its
    neighbours the images with the nearest estimated views (up to the mirror).

Example::

    python benchmarks/vdm_rescoring.py --n 10000 --snr 0.0625

BENCHMARKS.md ("Where the last points at SNR 1/16 go") records the results.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def simulate(n, snr, seed):
    from classavg import Simulation, set_progress
    from classavg.classification import RIRClass2D
    from classavg.classification.neighbors import exact_neighbors
    from classavg.sources import ArrayImageSource

    set_progress(False)
    sim = Simulation(64, n, snr=snr, ctf=True, seed=seed)
    src = sim.phase_flip().normalize_background()
    md = src.metadata.copy()
    md["rlnCtfDataArePhaseFlipped"] = 1
    imgs = np.empty((n, 64, 64), np.float32)
    for idx, batch in src.iter_batches(2048):
        imgs[idx] = batch
    data = ArrayImageSource(imgs, pixel_size=src.pixel_size, metadata=md)
    clf = RIRClass2D(data, n_nbor=50, seed=seed, refine=None)
    clf.fit_features()
    cand = exact_neighbors(clf.features, clf.n_candidates, candidates_only=True)
    return clf.coef, clf.fspca.k, cand, sim, imgs


def aligned(coef, k, table):
    """Coefficients of ``table``'s images aligned onto their row's image, shape table + (M,)."""
    from classavg.classification.rerank import align_candidates

    _, refl, angle = align_candidates(coef, k, table)
    x = coef[table]
    x = np.where(refl[..., None], np.conj(x), x)
    return x * np.exp(-1j * k * angle[..., None])


def rowwise(a, table, fn, block=500):
    """``fn(a[rows], a[table[rows]])`` over row blocks, for (n, K) pair scores."""
    out = np.empty(table.shape)
    for s in range(0, table.shape[0], block):
        sl = slice(s, s + block)
        out[sl] = fn(a[sl], a[table[sl]])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--snr", type=float, default=1 / 16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", nargs="+", default=["default", "graph", "hubness", "two_hop",
                   "neighbour_average", "references", "oracle"])
    args = p.parse_args()

    from classavg.classification.rerank import align_candidates
    from classavg.classification.vdm import vdm_refine
    from classavg.metrics import neighbor_accuracy

    t0 = time.time()
    coef, k, cand, sim, imgs = simulate(args.n, args.snr, args.seed)
    n = coef.shape[0]
    vd = sim.viewing_directions
    print(f"n {n}, SNR {args.snr:g}: {coef.shape[1]} components, features in "
          f"{time.time() - t0:.1f} s", flush=True)

    def acc(table):
        return round(100 * neighbor_accuracy(table[:, :50], vd, ceiling=False).fraction[10.0], 2)

    alignment = align_candidates(coef, k, cand)
    # The 150 candidates of highest affinity, the pool every re-scoring below orders; with
    # alignment_weight=0 the distances are sqrt(2 - 2 affinity).
    ci, _, cd = vdm_refine(coef, k, cand, 150, seed=0, alignment_weight=0, alignment=alignment)
    aff = 1.0 - cd.astype(np.float64) ** 2 / 2
    s = align_candidates(coef, k, ci)[0].astype(np.float64)

    def ranked(score):
        score = score.copy()
        score[:, 0] = np.inf
        return np.take_along_axis(ci, np.argsort(-score, 1, kind="stable"), 1)

    default = ranked(aff + s)
    results = {"affinity only": acc(ranked(aff)), "correlation only": acc(ranked(s)),
               "default (affinity + correlation)": acc(default)}
    if "default" in args.variants:
        results["vdm_refine as shipped"] = acc(vdm_refine(coef, k, cand, 50, seed=0,
                                                          alignment=alignment)[0])
    if "graph" in args.variants:
        results["20 edges, 96 eigenvectors"] = acc(vdm_refine(
            coef, k, cand, 50, seed=0, alignment=alignment, n_graph=20, n_eigs=96)[0])
    if "hubness" in args.variants:
        for gamma in (0.25, 0.5):
            r = np.sort((aff + s)[:, 1:], 1)[:, ::-1][:, :100].mean(1)
            results[f"hubness-corrected, gamma {gamma}"] = acc(ranked(aff + s - gamma * r[ci]))
    if "two_hop" in args.variants:
        S = _graph(cand, alignment, 20)
        P = S
        for power in (2, 3, 4):
            P = (P @ S).tocsr()
            if power in (2, 4):
                loc = _block_affinity(P, ci)
                results[f"|S^{power}| alone"] = acc(ranked(loc))
                results[f"default + |S^{power}|"] = acc(ranked(aff + s + loc / loc[:, 1:].max(
                    1, keepdims=True)))
    if "neighbour_average" in args.variants:
        for m in (10, 20):
            den = (coef + aligned(coef, k, default[:, 1:m + 1]).sum(1)) / (1 + m)
            s2 = align_candidates(den, k, ci)[0].astype(np.float64)
            results[f"{m}-neighbour averages"] = acc(ranked(aff + s2))
            results[f"{m}-neighbour averages + correlation"] = acc(ranked(aff + 0.5 * s + s2))
    if "references" in args.variants:
        results.update(_references(coef, k, default, ci, aff + s, ranked, acc))
    if "oracle" in args.variants:
        from classavg import Simulation
        from classavg.basis import FourierBesselBasis2D

        # The same views, rotations and shifts without CTF and noise.
        truth = Simulation(64, n, snr=None, ctf=False, seed=args.seed)
        assert np.allclose(truth.viewing_directions, vd)
        basis = FourierBesselBasis2D(64, dtype=np.float32)
        clean = np.concatenate([basis.expand(truth.images[i:i + 1000])
                                for i in range(0, n, 1000)])
        results["oracle: clean-image correlation"] = acc(ranked(
            align_candidates(clean, basis.k, ci)[0].astype(np.float64)))
    if "genie" in args.variants:
        results.update(_genie(sim, imgs, acc))
    for name, value in results.items():
        unit = "" if name.endswith("(degrees)") else " %"
        print(f"{name:45s} {value:6.2f}{unit}")
    print(f"total {time.time() - t0:.0f} s")


def _genie(sim, imgs, acc, bandlimit=0.5, block=32):
    """Neighbours by projection matching against CTF-matched clean templates at all views."""
    import scipy.fft

    from classavg.basis import FourierBesselBasis2D
    from classavg.classification.rerank import rotational_alignment

    n, L = imgs.shape[0], imgs.shape[1]
    vd = sim.viewing_directions
    basis = FourierBesselBasis2D(L, bandlimit=bandlimit)
    noisy = basis.expand(imgs)
    clean = sim.clean_images(np.arange(n), shifted=False, ctf=False).astype(np.float32)
    spectrum = scipy.fft.rfft2(np.fft.ifftshift(clean, axes=(1, 2)), workers=-1)
    del clean
    defocus = sim.defocus
    estimate = np.empty((n, 3))
    for d in np.unique(defocus):
        rows = np.flatnonzero(defocus == d)
        # Simulation's CTFs in the rfft layout; one per defocus group.
        ctf = np.abs(sim._rfft_ctf(rows[:1])[0])
        templates = np.fft.fftshift(scipy.fft.irfft2(spectrum * ctf, s=(L, L), workers=-1),
                                    axes=(1, 2)).astype(np.float32)
        both = np.concatenate([noisy[rows], basis.expand(templates)])
        m = rows.size
        for s in range(0, m, block):
            r = np.arange(s, min(s + block, m))
            sim_ = rotational_alignment(both, basis.k, r, np.broadcast_to(m + np.arange(n),
                                                                          (r.size, n)))[0]
            estimate[rows[r]] = vd[sim_.argmax(1)]
    error = np.degrees(np.arccos(np.abs(np.sum(estimate * vd, 1)).clip(0, 1)))
    table = np.empty((n, 50), np.int64)
    for s in range(0, n, 1000):
        g = np.abs(estimate[s:s + 1000] @ estimate.T)
        g[np.arange(g.shape[0]), np.arange(s, s + g.shape[0])] = np.inf
        table[s:s + 1000] = np.argsort(-g, 1, kind="stable")[:, :50]
    return {"genie: views within 10 degrees of the truth": round(100 * (error < 10).mean(), 2),
            "genie: median view error (degrees)": round(float(np.median(error)), 2),
            "genie: neighbours by estimated view": acc(table)}


def _graph(cand, alignment, n_graph):
    """The connection matrix of vdm_refine's graph with ``n_graph`` edges per image."""
    from classavg.classification.vdm import connection_matrix, self_tuning_weights

    sim, refl, angle = alignment
    n = cand.shape[0]
    score = sim.astype(np.float32)
    score[cand == np.arange(n)[:, None]] = -np.inf
    top = np.argpartition(-score, n_graph - 1, axis=1)[:, :n_graph]
    edges = np.take_along_axis(cand, top, 1)
    w = self_tuning_weights(edges, np.take_along_axis(sim, top, 1))
    return connection_matrix(edges, w, np.take_along_axis(refl, top, 1),
                             np.take_along_axis(angle, top, 1))[0]


def _block_affinity(P, table):
    """max(|plain|, |mirrored|) part of the 2 x 2 blocks of P at (i, table[i, c]),
    normalised by the diagonal blocks."""
    n = table.shape[0]
    i = np.repeat(np.arange(n), table.shape[1])
    j = table.ravel()

    def g(a, b):
        return np.asarray(P[2 * i + a, 2 * j + b]).reshape(table.shape)

    a, b, c, d = g(0, 0), g(0, 1), g(1, 0), g(1, 1)
    diag = P.diagonal()
    dn = np.maximum((diag[0::2] + diag[1::2]) / 2, 1e-300)
    norm = 2 * np.sqrt(dn[:, None] * dn[table])
    return np.maximum(np.hypot(a + d, c - b), np.hypot(a - d, c + b)) / norm


def _references(coef, k, default, ci, base, ranked, acc, R=1000, m=20, T=0.05, passes=4,
                top=10):
    """Soft assignment profiles over R references, refined by EM passes."""
    from classavg.classification.rerank import align_candidates

    n, M = coef.shape
    rng = np.random.default_rng(0)
    refs = aligned(coef, k, default[rng.choice(n, R, replace=False), :m]).mean(1)
    table = np.broadcast_to(n + np.arange(R), (n, R))
    out = {}
    for it in range(passes + 1):
        C, refl, angle = align_candidates(np.concatenate([coef, refs]), k, table)
        L = C.astype(np.float64) / T
        L -= L.max(1, keepdims=True)
        P = np.exp(L)
        P /= np.linalg.norm(P, axis=1, keepdims=True)
        prof = rowwise(P, ci, lambda a, b: np.einsum("br,bkr->bk", a, b))
        if it in (0, passes):
            out[f"reference profiles, EM pass {it}"] = acc(ranked(prof))
            out[f"default + reference profiles, EM pass {it}"] = acc(ranked(base + prof))
        # M step over each image's `top` most probable references.
        best = np.argpartition(-P, top - 1, axis=1)[:, :top]
        w = np.take_along_axis(P, best, 1)
        w /= w.sum(1, keepdims=True)
        x = np.where(np.take_along_axis(refl, best, 1)[..., None], np.conj(coef[:, None]),
                     coef[:, None]) * np.exp(-1j * k * np.take_along_axis(angle, best, 1)[..., None])
        num = np.zeros((R, M), complex)
        np.add.at(num, best.ravel(), (w[..., None] * x).reshape(-1, M))
        den = np.bincount(best.ravel(), w.ravel(), R)
        refs = np.where(den[:, None] > 0, num / np.maximum(den, 1e-12)[:, None], refs)
    return out


if __name__ == "__main__":
    main()
