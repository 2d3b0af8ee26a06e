r"""Junk images for :class:`~classavg.sources.simulation.Simulation` (``junk=``, ``junk_kinds=``).

Picked data sets hold 20-50 % false or bad picks.  Each junk kind below is drawn per image
(from the stream ``SeedSequence(seed, spawn_key=(7, i))``), composed in real space before the
CTF, and then gets exactly what a particle gets: amplitude factor, contrast sign, CTF,
background and noise.  Sizes and densities are relative to the particle: its projected radius
``R`` (pixels, ``sqrt(5/3)`` times the radius of gyration of the density above 5 % of its
maximum) and mean projected density ``D = M / (pi R^2)`` with ``M`` its integrated density
(the zero frequency of any projection).

=================== ==================================================================
kind                image (before the CTF; ``r``: distance from the centre, pixels)
=================== ==================================================================
empty_ice           nothing: noise (and background) only.
ice_contamination   a dense sphere: ``d sqrt(1 - |x - c|^2 / a^2)``, radius
                    ``a ~ U(1, 2) R`` (at most ``0.45 L``), peak ``d ~ U(3, 5) D``, centre
                    uniform in the disk ``|c| <= 0.35 L``; the CTF adds Fresnel fringes.
carbon_edge         a step of support film: ``t / (1 + exp(-(x . u - e) / 1 px))``, film
                    density ``t ~ U(0.5, 1.5) D``, edge at ``e ~ U(-0.3, 0.3) L`` from the
                    centre along a uniform direction ``u``; fringes from the CTF.
aggregate           2 (probability 0.7) or 3 particles in independent uniform orientations:
                    the first at the image's offset, the others at ``U(0.8, 1.6) R`` from it
                    in uniform directions (overlapping discs); integrated density ``2 M``
                    or ``3 M`` less what leaves the box.
off_centre          one particle at ``U(0.30, 0.45) L`` from the centre in a uniform
                    direction (recorded in ``offsets``).
broken              one particle with a fraction ``f ~ U(0.25, 0.5)`` of its positive density
                    removed beyond a line of uniform direction (edge 1 px soft).
=================== ==================================================================

Junk is composed on a ``2L x 2L`` canvas whose centre is the box, and the CTF is applied there
before cropping: shifts are not periodic (what leaves the box is lost instead of wrapping
round), and film and ice continue past the box (tapered to zero at the canvas edge) so that
the CTF fringes appear at their edges, not at the box borders.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from .._errors import ParameterError

from .._grid import centered_grid

__all__ = ["JUNK_KINDS", "KINDS", "draw_kinds", "particle_scale", "draw_junk", "compose_junk",
           "ice_contamination", "carbon_edge", "shift_nonperiodic", "broken_mask",
           "ctf_on_canvas", "ctf_in_box"]

#: The junk kinds, in the order of the module docstring.
JUNK_KINDS = ("empty_ice", "ice_contamination", "carbon_edge", "aggregate", "off_centre",
              "broken")
#: Every kind of image recorded in the ground truth.
KINDS = ("particle",) + JUNK_KINDS

_STREAM_KINDS, _STREAM_JUNK = 6, 7


def check_junk(junk, junk_kinds):
    """Validated ``(fraction, {kind: weight})`` of the ``junk`` / ``junk_kinds`` options."""
    try:
        frac = float(junk)
    except (TypeError, ValueError):
        raise ParameterError(f"junk must be a fraction in [0, 1], got {junk!r}") from None
    if not 0.0 <= frac <= 1.0:
        raise ParameterError(f"junk must be a fraction in [0, 1], got {junk!r}")
    if junk_kinds is None:
        return frac, {k: 1.0 for k in JUNK_KINDS}
    if not isinstance(junk_kinds, dict) or not junk_kinds:
        raise TypeError("junk_kinds must be a non-empty dict {kind: weight}, got "
                        f"{junk_kinds!r}")
    out = {}
    for k, w in junk_kinds.items():
        if k not in JUNK_KINDS:
            raise ParameterError(f"junk_kinds has an unknown kind {k!r}; expected kinds among "
                             f"{list(JUNK_KINDS)}")
        w = float(w)
        if not (np.isfinite(w) and w >= 0):
            raise ParameterError(f"junk_kinds[{k!r}] must be a non-negative weight, got {w!r}")
        out[k] = w
    if sum(out.values()) <= 0:
        raise ParameterError(f"junk_kinds must have a positive weight, got {junk_kinds!r}")
    return frac, out


def draw_kinds(seed, n, frac, weights):
    """Kind of each image, (n,) str: exactly ``round(frac n)`` junk images split between the
    kinds in proportion to ``weights`` (largest remainders), placed by a random permutation."""
    n_junk = int(round(frac * n))
    names = list(weights)
    w = np.array([weights[k] for k in names]) / sum(weights.values())
    counts = np.floor(w * n_junk).astype(int)
    rest = n_junk - counts.sum()
    counts[np.argsort(-(w * n_junk - counts), kind="stable")[:rest]] += 1
    labels = np.array(["particle"] * (n - n_junk) + sum(([k] * c for k, c in
                                                         zip(names, counts)), []),
                      dtype=f"U{max(len(k) for k in KINDS)}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM_KINDS,)))
    return labels[rng.permutation(n)]


def particle_scale(voxels, scale=1.0):
    """``(R, M)``: projected radius (pixels) and integrated density of a voxel map (module
    docstring); ``scale`` is the voxel size over the pixel size."""
    v = np.asarray(voxels, dtype=np.float64)
    mass = float(v.sum()) * scale ** 3
    w = np.where(v > 0.05 * v.max(), v, 0.0)
    c = np.arange(v.shape[0]) - v.shape[0] // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    tot = w.sum()
    com = [float((w * a).sum() / tot) for a in (x, y, z)]
    rg2 = float((w * ((x - com[0]) ** 2 + (y - com[1]) ** 2 + (z - com[2]) ** 2)).sum() / tot)
    return np.sqrt(5.0 / 3.0 * rg2) / scale, mass


def _unit(angle):
    return np.array([np.cos(angle), np.sin(angle)])


def draw_junk(kind, rng, L, offset, radius):
    """Geometry of one junk image: a dict with ``kind``, ``n_extra`` rotations to project
    besides the image's own (``extra``, (n_extra, 3, 3)) and the kind's parameters (module
    docstring; ``offset`` (2,) the image's own offset, ``radius`` the particle's ``R``)."""
    spec = {"kind": kind, "extra": np.zeros((0, 3, 3))}
    if kind == "ice_contamination":
        r, t = 0.35 * L * np.sqrt(rng.random()), 2 * np.pi * rng.random()
        spec.update(center=r * _unit(t), radius=min(rng.uniform(1.0, 2.0) * radius, 0.45 * L),
                    density=rng.uniform(3.0, 5.0))
    elif kind == "carbon_edge":
        spec.update(angle=2 * np.pi * rng.random(), distance=rng.uniform(-0.3, 0.3) * L,
                    density=rng.uniform(0.5, 1.5))
    elif kind == "aggregate":
        m = 2 if rng.random() < 0.7 else 3
        q = rng.standard_normal((m - 1, 4))
        spec["extra"] = _quat_to_rot(q / np.linalg.norm(q, axis=1, keepdims=True))
        d = rng.uniform(0.8, 1.6, m - 1) * radius
        t = 2 * np.pi * rng.random(m - 1)
        spec["offsets"] = np.concatenate(
            [np.asarray(offset, float)[None], offset + d[:, None] * np.stack(
                [np.cos(t), np.sin(t)], 1)])
    elif kind == "off_centre":
        spec["offset"] = rng.uniform(0.30, 0.45) * L * _unit(2 * np.pi * rng.random())
    elif kind == "broken":
        spec.update(angle=2 * np.pi * rng.random(), fraction=rng.uniform(0.25, 0.5),
                    offset=np.asarray(offset, dtype=np.float64))
    elif kind != "empty_ice":
        raise ParameterError(f"kind must be one of {list(JUNK_KINDS)}, got {kind!r}")
    return spec


def _quat_to_rot(q):
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def ice_contamination(L, center, radius, density):
    """Projection of a uniform sphere, ``density * sqrt(1 - |x - center|^2 / radius^2)``,
    (L, L) float64; ``center`` (x, y) and ``radius`` in pixels."""
    y, x = centered_grid(L)
    r2 = ((x - center[0]) ** 2 + (y - center[1]) ** 2) / radius ** 2
    return density * np.sqrt(np.clip(1.0 - r2, 0.0, None))


def carbon_edge(L, angle, distance, density, width=1.0):
    """A film edge ``density / (1 + exp(-(x . u - distance) / width))`` with
    ``u = (cos angle, sin angle)``, (L, L) float64 (the film where ``x . u > distance``)."""
    y, x = centered_grid(L)
    s = (x * np.cos(angle) + y * np.sin(angle) - distance) / width
    return density / (1.0 + np.exp(-np.clip(s, -50, 50)))


def _embed(image, M):
    """``image`` (..., L, L) at the centre of a zero (..., M, M) canvas (centre pixel
    ``M // 2``)."""
    L = image.shape[-1]
    out = np.zeros(image.shape[:-2] + (M, M))
    lo = M // 2 - L // 2
    out[..., lo:lo + L, lo:lo + L] = image
    return out


def _crop(canvas, L):
    """The central (L, L) window of a canvas (centre pixel kept at ``L // 2``)."""
    lo = canvas.shape[-1] // 2 - L // 2
    return canvas[..., lo:lo + L, lo:lo + L]


def ctf_on_canvas(canvas, h):
    """The CTF ``h`` (rfft2 layout of the canvas size) applied to centred canvases
    (..., M, M): what a particle or junk image gets before the box is cropped from it."""
    axes = (-2, -1)
    f = sfft.rfft2(np.fft.ifftshift(canvas, axes=axes), axes=axes, workers=-1) * h
    return np.fft.fftshift(sfft.irfft2(f, s=canvas.shape[-2:], axes=axes, workers=-1),
                           axes=axes)


def ctf_in_box(images, h):
    """:func:`ctf_on_canvas` for images (..., L, L): each embedded in a zero canvas twice its
    size (``h`` on that grid), the CTF applied there and the box cropped, so that signal the
    CTF delocalises beyond the box is lost instead of wrapping round."""
    L = images.shape[-1]
    return _crop(ctf_on_canvas(_embed(images, 2 * L), h), L)


def _fourier_shift(canvas, offset):
    """Periodic sub-pixel translation of a square canvas by ``offset`` (x, y) pixels."""
    M = canvas.shape[-1]
    f = sfft.rfft2(canvas)
    ky, kx = np.fft.fftfreq(M), np.fft.rfftfreq(M)
    f *= np.exp(-2j * np.pi * offset[1] * ky)[:, None] * np.exp(-2j * np.pi * offset[0] * kx)
    return sfft.irfft2(f, s=canvas.shape)


def shift_nonperiodic(image, offset):
    """``image`` (L, L) translated by ``offset`` (x, y) pixels without wrap-around: a Fourier
    shift on a zero-padded ``2L`` canvas, cropped back (exact for band-limited content)."""
    L = image.shape[-1]
    return _crop(_fourier_shift(_embed(image, 2 * L), offset), L)


def _canvas_window(L):
    """(2L, 2L) window: 1 up to ``0.75 L`` from the centre (square), a raised cosine to 0 at the
    canvas edge, so film and ice end smoothly outside the box instead of at a wrapped step."""
    c = np.abs(np.arange(2 * L) - L) / L                      # 0 at the centre, 1 at the edge
    w = np.where(c <= 0.75, 1.0, 0.5 * (1 + np.cos(np.pi * np.clip((c - 0.75) / 0.25, 0, 1))))
    return w[:, None] * w[None, :]


def broken_mask(image, angle, fraction, width=1.0):
    """A soft half-plane mask removing ``fraction`` of the positive density of ``image``
    beyond a line of normal ``(cos angle, sin angle)``, (L, L) float64 in [0, 1]."""
    L = image.shape[-1]
    y, x = centered_grid(L)
    s = x * np.cos(angle) + y * np.sin(angle)
    w = np.clip(image, 0.0, None).ravel()
    order = np.argsort(-s.ravel())
    cum = np.cumsum(w[order])
    cut = s.ravel()[order][min(np.searchsorted(cum, fraction * cum[-1]), w.size - 1)]
    return 1.0 / (1.0 + np.exp(np.clip((s - cut) / width, -50, 50)))


def compose_junk(spec, L, projections, density):
    """The junk image before the CTF on a ``(2L, 2L)`` canvas (the box is its centre).

    Film and ice extend past the box (tapered to zero at the canvas edge), so the CTF applied
    on the canvas gives fringes only where the edges are, not at the box borders.

    Parameters
    ----------
    spec : dict
        From :func:`draw_junk`.
    L : int
    projections : ndarray, shape (1 + n_extra, L, L)
        Centred clean projections: the image's own rotation, then ``spec["extra"]``.
    density : float
        The particle's mean projected density ``D``.

    Returns
    -------
    ndarray, shape (2L, 2L), float64
    """
    kind, M = spec["kind"], 2 * L
    if kind == "empty_ice":
        return np.zeros((M, M))
    if kind == "ice_contamination":
        return ice_contamination(M, spec["center"], spec["radius"], spec["density"] * density)
    if kind == "carbon_edge":
        return carbon_edge(M, spec["angle"], spec["distance"],
                           spec["density"] * density) * _canvas_window(L)
    if kind == "aggregate":
        return sum(_fourier_shift(_embed(p, M), o) for p, o in zip(projections,
                                                                   spec["offsets"]))
    img = _fourier_shift(_embed(projections[0], M), spec["offset"])
    if kind == "broken":
        img = img * broken_mask(img, spec["angle"], spec["fraction"])
    return img


def draw_all(seed, kinds, L, offsets, voxels, scale):
    """``(specs, D)``: the :func:`draw_junk` geometry of every junk image (dict index ->
    spec, stream ``(7, i)``) and the particle's mean projected density ``D``; the offsets of
    off-centre images are set in ``offsets`` (n, 2), in place."""
    radius, mass = particle_scale(voxels, scale)
    specs = {}
    for i in np.flatnonzero(kinds != "particle"):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM_JUNK, int(i))))
        specs[int(i)] = spec = draw_junk(str(kinds[i]), rng, L, offsets[i], radius)
        if spec["kind"] == "off_centre":
            offsets[i] = spec["offset"]
    return specs, mass / (np.pi * radius ** 2)


def compose_batch(specs, idx, junk, f_all, L, density, ctf=None):
    """Junk images of a batch, (len(junk), L, L) float64, the CTF applied when given.

    ``idx``: image indices of the batch; ``junk``: positions in ``idx`` of its junk images;
    ``f_all`` (rfft layout): the own slices of ``idx``, then the extra rotations of the junk
    specs in order; ``ctf(i, M)``: the rfft-layout CTF of image ``i`` on an ``M x M`` grid
    (applied on the ``2L`` canvas, then the box is cropped) or None.
    """
    proj = np.fft.fftshift(sfft.irfft2(f_all, s=(L, L), workers=-1), axes=(1, 2))
    out = np.empty((len(junk), L, L))
    pos = len(idx)
    for r, j in enumerate(junk):
        spec = specs[int(idx[j])]
        m = len(spec["extra"])
        canvas = compose_junk(spec, L, np.concatenate([proj[j:j + 1], proj[pos:pos + m]]),
                              density)
        pos += m
        if ctf is not None:
            canvas = ctf_on_canvas(canvas, ctf(int(idx[j]), 2 * L))
        out[r] = _crop(canvas, L)
    return out
