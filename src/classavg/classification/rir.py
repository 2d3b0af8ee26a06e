"""Rotation-invariant representation (RIR) classification.

Pipeline: Fourier-Bessel expansion -> steerable PCA (denoise and compress) -> bispectrum
(rotation invariant, mirror conjugates) -> randomized PCA -> nearest neighbours over all
images and their mirrors.  Following Zhao & Singer (J. Struct. Biol. 2014) and the ASPIRE
design, with these differences: the steerable PCA and bispectrum PCA are fitted on a bounded
random subset and applied in batches (memory bounded by ``batch_size``); eigenvalues are shrunk
with the spiked-covariance estimator; the feature PCA is mirror-symmetric (real basis), so a
mirrored image's features are conjugates and the neighbour search over 2n candidates costs two
real matrix products; every image appears at most once per class.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .._backend import check_device
from .._parallel import block_map
from .._progress import progress
from .._validation import check_choice, check_float, check_int, check_random_state
from ..basis import FourierBesselBasis2D
from ..sources.base import ImageSource
from .base import Class2D
from .bispectrum import BispectrumPCA
from .ctf_correction import CTFCorrection
from .fspca import SteerablePCA, estimate_noise_variance
from .neighbors import approximate_neighbors, exact_neighbors, has_faiss
from .rerank import align_candidates, rerank_neighbors
from .vdm import vdm_refine

__all__ = ["RIRClass2D"]

logger = logging.getLogger(__name__)

#: Above this many images ``nn="auto"`` switches to the approximate (inverted-file) index when faiss
#: is installed (at n = 30,000, SNR 1/8: 5.8 s instead of 14.7 s for the exact search, and the
#: same re-ranked accuracy, 91.5 %).
APPROXIMATE_NN_THRESHOLD = 20_000

#: At most this many images fit the bispectrum PCA (a random subset of the steerable-PCA fit
#: images): at n = 10,000, SNR 1/8 with CTF, 1,500, 2,500 and 5,000 give the same neighbours
#: (70.9 %, 70.8 %, 70.8 % within 10 degrees before re-ranking, 85.65 % after) and the fit
#: takes 0.3 s instead of 1.2 s at 5,000.
BISPECTRUM_FIT_SIZE = 2000


class RIRClass2D(Class2D):
    """Rotation-invariant classification with steerable PCA and bispectrum features.

    Parameters
    ----------
    src : ImageSource
        Images to classify (phase-flipped and background-normalised data work best).
    n_nbor : int, optional
        Columns of the neighbour table, including the reference itself (default 100).
    fspca_components : int, optional
        Complex steerable-PCA components kept over all angular frequencies (default 400).
    bispectrum_components : int, optional
        Complex feature dimension after the bispectrum PCA (default 300).
    sample_n : int, optional
        Bispectrum triples drawn (default 4000).
    alpha : float, optional
        Magnitude compression exponent of the bispectrum (default 1/3).
    nn : {"auto", "exact", "approximate"}, optional
        Neighbour search: exact blocked matrix products, or an inverted-file index (needs faiss);
        "auto" uses the index above :data:`APPROXIMATE_NN_THRESHOLD` images when faiss is
        installed.  The choice is recorded in :attr:`nn_method_`.
    seed : int, optional
        Seed of every random choice (fit subsets, triples, randomized PCA).
    batch_size : int, optional
        Images expanded at once; bounds memory (default 1024).
    fit_size : int, optional
        At most this many images (a random subset) fit the steerable PCA and the CTF
        correction (default 10000); the bispectrum PCA uses at most
        :data:`BISPECTRUM_FIT_SIZE` of them.
    basis : FourierBesselBasis2D, optional
        Basis to expand in; built for ``src.L`` with ``bandlimit`` when not given.
    bandlimit : float, optional
        Band limit of the classification basis as a fraction of the Nyquist frequency
        (default 0.5, i.e. 4 pixels per period; ignored when ``basis`` is given).  Views are
        told apart at low resolution, and at cryo-EM SNR the higher frequencies carry mostly
        noise: at n = 10,000, 64 x 64, the neighbours are as accurate at 0.5 as at 1 (SNR 1/8
        with CTF: 85.65 % vs 85.65 % within 10 degrees; noise-free: 100 % vs 100 %) and the
        expansion and steerable PCA take a third of the time.  Averagers keep the full band.
    rerank : bool, optional
        Re-rank ``n_candidates`` bispectrum neighbours by their rotationally aligned
        correlation of denoised steerable coefficients (default True; see
        :mod:`classavg.classification.rerank`).  False reproduces the plain bispectrum
        classification of the reference implementation.
    n_candidates : int, optional
        Candidates per image for re-ranking (default ``max(4 * n_nbor, 100)``, at most n).
    ctf_correct : {"auto", True, False}, optional
        Classify on CTF-corrected, denoised coefficients: before the steerable PCA the
        Fourier-Bessel coefficients are covariance-Wiener filtered with each image's CTF and
        brought to the data set's mean squared CTF
        (:class:`~classavg.classification.ctf_correction.CTFCorrection`, target
        "mean_ctf2"), so that views match across defocus groups (noise-free, 7 defocus
        groups: 99.99 % of 10 neighbours within 10 degrees against 68 % without, n = 2,000).
        Only the classification input changes; averagers read the source's images.
        "auto" (default) corrects when the source has CTF parameters (``src.has_ctf``).
        Recorded in :attr:`ctf_correct_`.
    phase_flipped : {"auto", True, False}, optional
        Whether the images were phase flipped (the effective CTF is then ``|CTF|``); "auto"
        (default) detects a :class:`~classavg.sources.transforms.PhaseFlippedSource` in the
        source chain or the metadata flag ``rlnCtfDataArePhaseFlipped``
        (:func:`~classavg.classification.ctf_correction.is_phase_flipped`).  Used only with
        CTF correction.
    device : {"cpu", "cuda"}, optional
        Where the hot kernels run: the Fourier-Bessel expansion, the bispectrum transform,
        the exact neighbour search and the rotational re-ranking (default "cpu"; "cuda"
        needs ``pip install 'classavg[gpu]'``, see :mod:`classavg._backend`).  The fits, the
        approximate index and the VDM eigen-solve stay on the CPU.  Not with a Dask client.
    refine : {None, "vdm"}, optional
        Neighbour refinement after the candidate search (default None).  "vdm" aligns the
        ``n_candidates`` candidates rotationally (the re-ranking work, whatever ``rerank``
        says), builds the graph of each image's 10 best-aligned candidates with their in-plane
        rotations and mirrors, and ranks neighbours by the vector diffusion affinity of its
        connection matrix (searched over all images, then combined with the aligned
        correlation; :func:`~classavg.classification.vdm.vdm_refine`; Singer & Wu, Comm. Pure
        Appl. Math. 65, 2012).  Markedly more accurate at SNR 1/4 and below, a few points
        less accurate on noise-free data; costs an eigen-solve, a search and the alignment of
        ``1.5 n_nbor`` more pairs per image (``timings_["vdm"]``).

    Attributes
    ----------
    basis, fspca : the fitted basis and :class:`SteerablePCA`
    coef : ndarray, complex64, shape (n, fspca.n_components_)
        Denoised steerable-PCA coefficients of every image (reusable by averagers).
    features : ndarray, complex64, shape (n, bispectrum_components)
        Unit-length rotation-invariant features.
    nn_method_ : str
        "exact" or "approximate".
    ctf_correct_ : bool
        Whether CTF correction is applied (then :attr:`coef` holds the steerable-PCA
        coefficients of the CTF-corrected images, as filtered by the mean squared CTF).
    ctf_correction_ : CTFCorrection or None
        The fitted CTF correction (None without it).
    timings_ : dict
        Wall time in seconds of each stage.
    """

    #: Takes ``device`` and ``seed``; ``classify(client=...)`` (:mod:`classavg._tags`).
    tags = Class2D.tags.extend(device=True, client=True, random=True)

    def __init__(self, src, *, n_nbor=100, fspca_components=400, bispectrum_components=300,
                 sample_n=4000, alpha=1 / 3, nn="auto", seed=0, batch_size=1024,
                 fit_size=10_000, basis=None, bandlimit=0.5, rerank=True, n_candidates=None,
                 ctf_correct="auto", phase_flipped="auto", refine=None, device="cpu"):
        if not isinstance(src, ImageSource):  # an array would fail later, obscurely
            raise TypeError(f"src must be an ImageSource, got {type(src).__name__}; wrap "
                            "arrays as ArrayImageSource(images)")
        super().__init__(src)
        n = src.n
        self.n_nbor = check_int("n_nbor", n_nbor, min=1)
        if self.n_nbor >= n:
            raise ValueError(f"n_nbor must be smaller than the number of images ({n}), "
                             f"got {n_nbor!r}")
        self.fspca_components = check_int("fspca_components", fspca_components, min=1)
        self.bispectrum_components = check_int("bispectrum_components", bispectrum_components,
                                               min=1)
        self.sample_n = check_int("sample_n", sample_n, min=1)
        if self.bispectrum_components > self.sample_n:
            raise ValueError(f"bispectrum_components must be <= sample_n ({sample_n}), "
                             f"got {bispectrum_components!r}")
        for name, v in (("fspca_components", self.fspca_components),
                        ("bispectrum_components", self.bispectrum_components)):
            if v > n:
                raise ValueError(f"{name} must be <= the number of images ({n}), got {v!r}; "
                                 "lower it for small data sets")
        self.alpha = check_float("alpha", alpha, min=0.0, max=1.0, min_inclusive=False)
        self.nn = check_choice("nn", nn, ("auto", "exact", "approximate"))
        if self.nn == "approximate" and not has_faiss():
            raise ValueError("nn must be 'auto' or 'exact' when faiss is not installed "
                             "(pip install classavg[fast]), got 'approximate'")
        check_random_state(seed)
        self.seed = seed
        self.batch_size = check_int("batch_size", batch_size, min=1)
        self.fit_size = check_int("fit_size", fit_size, min=2)
        if basis is not None and basis.L != src.L:
            raise ValueError(f"basis must be built for L={src.L}, got L={basis.L}")
        self.basis = basis
        self.bandlimit = check_float("bandlimit", bandlimit, min=0.0, max=1.0,
                                     min_inclusive=False)
        self.rerank = bool(rerank)
        if n_candidates is None:
            n_candidates = max(4 * self.n_nbor, 100)
        self.n_candidates = min(check_int("n_candidates", n_candidates, min=self.n_nbor), n)
        self.ctf_correct = check_choice("ctf_correct", ctf_correct, ("auto", True, False))
        self.phase_flipped = check_choice("phase_flipped", phase_flipped, ("auto", True, False))
        if self.ctf_correct is True and not src.has_ctf:
            raise ValueError("ctf_correct must be 'auto' or False for a source without CTF "
                             "parameters, got True")
        self.ctf_correct_ = bool(src.has_ctf) if self.ctf_correct == "auto" \
            else self.ctf_correct
        self.ctf_correction_ = None
        self.refine = check_choice("refine", refine, (None, "vdm"))
        self.device = check_device(device)

    # -- stages -------------------------------------------------------------------------------
    def _blocks(self, indices):
        bs = self.batch_size
        return [indices[s:s + bs] for s in range(0, indices.size, bs)]

    def _expand(self, indices, client):
        """FB coefficients and corner noise variance of the images at ``indices``."""
        blocks = self._blocks(indices)
        coefs, noise = [], 0.0
        results = block_map(_expand_block, blocks, shared=(self.src, self.basis, self.device),
                            client=client)
        for c, v in progress(results, total=len(blocks), desc="expanding", unit="batch"):
            coefs.append(c)
            noise += v
        return np.concatenate(coefs), noise / len(indices)

    def fit_features(self, *, client=None):
        """Run the basis, steerable-PCA and bispectrum stages; set :attr:`features`.

        Parameters
        ----------
        client : dask.distributed.Client, optional
            Run the per-batch work (expansion, CTF correction, steerable-PCA and bispectrum
            transforms) as Dask tasks on this client's cluster (:mod:`classavg._parallel`);
            the fits run here.  Same result as without a client.
        """
        if client is not None and self.device != "cpu":
            raise ValueError(f"device must be 'cpu' with a Dask client, got {self.device!r}")
        rng = np.random.default_rng(self.seed)
        n = self.src.n
        self.timings_ = {}
        t0 = time.perf_counter()
        if self.basis is None:
            self.basis = FourierBesselBasis2D(self.src.L, bandlimit=self.bandlimit,
                                              dtype=np.float32)
        fit_idx = np.sort(rng.choice(n, self.fit_size, replace=False)) if n > self.fit_size \
            else np.arange(n)
        fb, noise_var = self._expand(fit_idx, client)
        if self.ctf_correct_:
            t1 = time.perf_counter()
            # Every image is brought to the data set's mean squared CTF (target "mean_ctf2"):
            # defocus-independent and weighted like a matched filter for the comparisons.
            self.ctf_correction_ = CTFCorrection.from_source(
                self.basis, self.src, phase_flipped=self.phase_flipped,
                target="mean_ctf2").fit(fb, fit_idx, noise_var)
            fb = self.ctf_correction_.transform(fb, fit_idx)
            # The filtered coefficients are already denoised: the steerable PCA only compresses.
            noise_var = 0.0
            self.timings_["ctf_correction"] = time.perf_counter() - t1
        if noise_var <= 0:
            # Noise-free data: any small positive level keeps the shrinkage well defined.
            noise_var = 1e-6 * float(np.mean(np.abs(fb) ** 2))
        self.noise_var_ = noise_var
        self.fspca = SteerablePCA(self.basis, n_components=self.fspca_components)
        self.fspca.fit(fb, noise_var)
        if fit_idx.size == n:
            self.coef = self.fspca.transform(fb)
        else:
            self.coef = np.empty((n, self.fspca.n_components_), np.complex64)
            blocks = self._blocks(np.arange(n))
            shared = (self.src, self.basis, self.ctf_correction_, self.fspca, self.device)
            results = block_map(_coef_block, blocks, shared=shared, client=client)
            for idx, c in zip(blocks, progress(results, total=len(blocks), desc="steerable PCA",
                                               unit="batch")):
                self.coef[idx] = c
        del fb
        self.timings_["basis+fspca"] = (time.perf_counter() - t0
                                        - self.timings_.get("ctf_correction", 0.0))

        t0 = time.perf_counter()
        self.bispectrum_pca = BispectrumPCA(
            n_components=self.bispectrum_components, sample_n=self.sample_n, alpha=self.alpha,
            fit_size=min(self.fit_size, BISPECTRUM_FIT_SIZE), seed=self.seed)
        self.bispectrum_pca.fit(self.coef, self.fspca.k, self.fspca.eigvals)
        d = self.bispectrum_pca.components.shape[1]
        self.features = np.empty((n, d), np.complex64)
        starts = range(0, n, self.batch_size)
        results = block_map(_feature_block,
                            (self.coef[s:s + self.batch_size] for s in starts),
                            shared=(self.bispectrum_pca, self.device), client=client)
        for s, f in zip(starts, progress(results, total=len(starts), desc="bispectrum",
                                         unit="batch")):
            self.features[s:s + self.batch_size] = f
        self.timings_["bispectrum"] = time.perf_counter() - t0
        return self.features

    def classify(self, *, client=None):
        """Classify every image; see :meth:`Class2D.classify` for the returned table.

        Parameters
        ----------
        client : dask.distributed.Client, optional
            Run the per-batch stages, the neighbour search (by query block) and the
            re-ranking (by row block) on this client's cluster; the fits and the VDM
            eigen-solve run here.  The table equals the one computed without a client.
        """
        self.fit_features(client=client)
        t0 = time.perf_counter()
        n = self.src.n
        if self.nn == "auto":
            self.nn_method_ = ("approximate" if n > APPROXIMATE_NN_THRESHOLD and has_faiss()
                               else "exact")
        else:
            self.nn_method_ = self.nn
        candidates_only = bool(self.rerank or self.refine)
        n_search = self.n_candidates if candidates_only else self.n_nbor
        # With re-ranking only the candidate indices go on (int32: 4 instead of 13 bytes per
        # entry of the n x n_candidates table, which dominates the memory at large n).
        if self.nn_method_ == "exact":
            table = exact_neighbors(self.features, n_search, client=client,
                                    device=self.device, candidates_only=candidates_only)
        else:
            table = approximate_neighbors(self.features, n_search, seed=self.seed,
                                          client=client, candidates_only=candidates_only)
        self.timings_["neighbors"] = time.perf_counter() - t0
        candidates = table
        if self.refine == "vdm":
            t0 = time.perf_counter()
            # Held in a list that hands vdm_refine the only reference, so that it can free
            # the n x n_candidates tables before its eigen-solve.
            alignment = [align_candidates(self.coef, self.fspca.k, candidates, client=client,
                                          device=self.device)]
            self.timings_["rerank"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            table = vdm_refine(self.coef, self.fspca.k, candidates, self.n_nbor,
                               n_graph=min(10, candidates.shape[1] - 1), nn=self.nn_method_,
                               seed=self.seed, alignment=alignment.pop())
            self.timings_["vdm"] = time.perf_counter() - t0
        elif self.rerank:
            t0 = time.perf_counter()
            table = rerank_neighbors(self.coef, self.fspca.k, candidates, self.n_nbor,
                                     client=client, device=self.device)
            self.timings_["rerank"] = time.perf_counter() - t0
        self.class_indices, self.class_refl, self.class_distances = table
        logger.info("RIRClass2D: %d images, %s neighbours, timings %s", n, self.nn_method_,
                    {k: round(v, 2) for k, v in self.timings_.items()})
        return table


# -- block functions (module level: picklable Dask tasks) -----------------------------------------
def _expand_block(src, basis, device, indices):
    """FB coefficients of ``src.images[indices]`` and their summed corner noise variance."""
    imgs = src.images[indices]
    return basis.expand(imgs, device=device), estimate_noise_variance(imgs) * imgs.shape[0]


def _coef_block(src, basis, ctf_correction, fspca, device, indices):
    """Steerable-PCA coefficients of ``src.images[indices]`` (CTF-corrected when fitted)."""
    c = basis.expand(src.images[indices], device=device)
    if ctf_correction is not None:
        c = ctf_correction.transform(c, indices)
    return fspca.transform(c)


def _feature_block(bispectrum_pca, device, coef):
    return bispectrum_pca.transform(coef, device=device)
