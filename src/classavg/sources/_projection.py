"""Pose, volume, projection and CTF-parameter helpers of :mod:`classavg.sources.simulation`.

ZYZ (RELION) Euler angles of rotation matrices and Haar-random rotations, the preparation of
the ``volume`` argument (analytic blobs, voxel arrays, MRC maps) with the NUFFT central
slices of voxel arrays, and the per-image CTF parameter table.  The image formation model and
the random streams are described in :mod:`classavg.sources.simulation`.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import scipy.fft

from .._validation import check_float, check_int
from .ctf import evaluate_ctf
from .molecules import get_molecule, is_molecule_name, molecule_path
from .volume import GaussianBlobVolume, default_volume, load_volume

__all__ = ["euler_zyz"]

_MAX_ASTIGMATISM = 200.0   # largest |defocus_u - defocus_v| (Angstrom) of the CTF groups
_STREAM_ROTATIONS, _STREAM_OFFSETS, _STREAM_CTF, _STREAM_NOISE = range(4)

# CTF keyword of evaluate_ctf -> RELION label, default (None: required).
_CTF_FIELDS = {
    "defocus_u": ("rlnDefocusU", None),
    "defocus_v": ("rlnDefocusV", None),
    "defocus_angle": ("rlnDefocusAngle", 0.0),
    "voltage": ("rlnVoltage", 300.0),
    "cs": ("rlnSphericalAberration", 2.7),
    "amplitude_contrast": ("rlnAmplitudeContrast", 0.1),
    "phase_shift": ("rlnPhaseShift", 0.0),
    "bfactor": ("rlnCtfBfactor", 0.0),
}
_OPTIONAL_CTF = ("phase_shift", "bfactor")   # written to the metadata only when given


def euler_zyz(rotations):
    """RELION / ZYZ Euler angles ``(rot, tilt, psi)`` of rotation matrices, in radians.

    ``R = Rz(rot) @ Ry(tilt) @ Rz(psi)`` with the active rotations
    ``Rz(a) = [[cos a, -sin a, 0], [sin a, cos a, 0], [0, 0, 1]]`` and
    ``Ry(b) = [[cos b, 0, sin b], [0, 1, 0], [-sin b, 0, cos b]]``.  The viewing direction
    ``R[:, 2] = (sin tilt cos rot, sin tilt sin rot, cos tilt)`` depends on ``rot`` and ``tilt``
    only; ``psi`` is the in-plane angle relative to the canonical frame
    ``Rz(rot) @ Ry(tilt)`` of that direction.  These are RELION's ``rlnAngleRot``,
    ``rlnAngleTilt`` and ``rlnAnglePsi`` (in degrees there): RELION's matrix
    ``A = Euler_angles2matrix(rot, tilt, psi)`` is ``R.T``.  At the poles (``tilt`` 0 or pi)
    ``rot`` is set to 0 and the whole in-plane rotation goes into ``psi``.

    Parameters
    ----------
    rotations : array_like, shape (k, 3, 3)

    Returns
    -------
    ndarray, shape (k, 3)
        ``rot`` and ``psi`` in (-pi, pi], ``tilt`` in [0, pi].
    """
    r = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    st = np.hypot(r[:, 0, 2], r[:, 1, 2])
    tilt = np.arctan2(st, r[:, 2, 2])
    pole = st < 1e-9
    rot = np.where(pole, 0.0, np.arctan2(r[:, 1, 2], r[:, 0, 2]))
    psi = np.arctan2(r[:, 2, 1], -r[:, 2, 0])
    # Poles: R = Rz(psi) (tilt 0) or diag(-1, 1, -1) Rz(psi) (tilt pi).
    psi = np.where(pole, np.arctan2(r[:, 1, 0], r[:, 1, 1]), psi)
    return np.stack([rot, tilt, psi], axis=1)


def _uniform_rotations(n, seed):
    """``n`` Haar-distributed rotations from normalised Gaussian quaternions (Shoemake)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM_ROTATIONS,)))
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def _resample_volume(vol, L):
    """Fourier-crop (or zero-pad) a cubic ``[z, y, x]`` map to ``L^3``, keeping point values."""
    L0 = vol.shape[0]
    if L0 == L:
        return vol
    axes = (0, 1, 2)
    f = np.fft.fftshift(scipy.fft.fftn(np.fft.ifftshift(vol, axes=axes), workers=-1), axes=axes)
    out = np.zeros((L,) * 3, dtype=np.complex128)
    m = min(L, L0)
    src = slice(L0 // 2 - m // 2, L0 // 2 - m // 2 + m)
    dst = slice(L // 2 - m // 2, L // 2 - m // 2 + m)
    out[dst, dst, dst] = f[src, src, src]
    vol = np.fft.fftshift(scipy.fft.ifftn(np.fft.ifftshift(out, axes=axes), workers=-1),
                          axes=axes).real
    return vol * (L / L0) ** 3


def _center_crop(vol, L):
    """The central ``L^3`` voxels of a cubic map (centre voxel ``L0 // 2`` kept at ``L // 2``)."""
    L0 = vol.shape[0]
    if L0 <= L:
        return vol
    lo = L0 // 2 - L // 2
    return vol[lo:lo + L, lo:lo + L, lo:lo + L]


def _map_to_grid(arr, voxel_size, L, pixel_size):
    """Resample a map of voxel size ``voxel_size`` for images of ``L`` pixels of ``pixel_size``.

    The map is Fourier-cropped to ``L1 = ceil(L0 * voxel_size / pixel_size)`` voxels (never
    padded: ``L1 <= L0``), so its new voxel ``v1 = L0 * voxel_size / L1 <= pixel_size`` keeps
    every frequency the images hold, then centre-cropped to at most ``L`` voxels (density outside
    the image box would wrap around).  The NUFFT then samples it at frequencies scaled by
    ``scale = v1 / pixel_size`` (cycles per voxel per cycle per pixel), zero beyond the voxel
    Nyquist (a Fourier pad when ``pixel_size < voxel_size``).  Returns ``(voxels, scale)``.
    """
    L0 = arr.shape[0]
    L1 = min(L0, int(np.ceil(L0 * voxel_size / pixel_size - 1e-6)))
    v1 = L0 * voxel_size / L1
    return _center_crop(_resample_volume(arr, L1), L), v1 / pixel_size


def _prepare_volume(volume, L, projection, pixel_size=None):
    """Resolve the ``volume`` argument of :class:`~classavg.sources.simulation.Simulation`.

    Returns ``(blobs, voxels, name, pixel_size, scale)``: the analytic volume (or None), the
    contiguous float64 voxel array to NUFFT (or None), a description for the ground truth, the
    image pixel size (``pixel_size`` when given; else the MRC voxel size times ``L0 / L``, the
    image covering the map's box; else None) and the NUFFT frequency scale (1 unless a map with
    a voxel size is resampled to a given ``pixel_size``, see :func:`_map_to_grid`).
    """
    voxel_size, name = None, None
    if volume is None:
        volume = default_volume()
    if is_molecule_name(volume):
        name = get_molecule(volume).name
        volume, voxel_size = load_volume(molecule_path(volume), with_voxel_size=True)
    elif isinstance(volume, (str, os.PathLike)):
        name = os.fspath(volume)
        volume, voxel_size = load_volume(volume, with_voxel_size=True)
    if isinstance(volume, GaussianBlobVolume):
        voxels = np.ascontiguousarray(volume.to_array(L)) if projection == "nufft" else None
        return volume, voxels, name or "GaussianBlobVolume", pixel_size, 1.0
    if projection == "analytic":
        raise ValueError("projection must be 'auto' or 'nufft' for a voxel volume, got "
                         "'analytic'")
    arr = np.asarray(volume)
    if arr.ndim != 3 or not (arr.shape[0] == arr.shape[1] == arr.shape[2]):
        raise ValueError(f"volume must be a cubic array (L0, L0, L0), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"volume must be real-valued, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("volume holds NaN or Inf voxels; expected finite values")
    scale = 1.0
    if voxel_size is not None and pixel_size is not None:
        arr, scale = _map_to_grid(arr, voxel_size, L, pixel_size)
    else:
        if voxel_size is not None:
            pixel_size = voxel_size * arr.shape[0] / L     # the image covers the map's box
        arr = _resample_volume(arr, L)
    return None, np.ascontiguousarray(arr), name or "array", pixel_size, scale


def _ctf_table(ctf, n, n_defocus_groups, defocus_range, seed):
    """Per-image CTF parameters as a dict ``evaluate_ctf keyword -> (n,) float64``, or None."""
    if ctf is None or ctf is False:
        return None
    if ctf is True:
        k = check_int("n_defocus_groups", n_defocus_groups, min=1)
        try:
            lo, hi = (float(v) for v in defocus_range)
        except (TypeError, ValueError):
            raise ValueError("defocus_range must be a pair (min, max) of defoci in Angstrom, "
                             f"got {defocus_range!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
            raise ValueError("defocus_range must be a pair (min, max) of defoci in Angstrom "
                             f"with 0 < min <= max, got {defocus_range!r}")
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM_CTF,)))
        defocus = np.linspace(lo, hi, k)
        half_astig = rng.uniform(0.0, _MAX_ASTIGMATISM / 2, k)
        angle = rng.uniform(0.0, 180.0, k)
        group = np.arange(n) % k
        return dict(defocus_u=(defocus + half_astig)[group],
                    defocus_v=(defocus - half_astig)[group], defocus_angle=angle[group],
                    voltage=np.full(n, 300.0), cs=np.full(n, 2.7),
                    amplitude_contrast=np.full(n, 0.1))
    if isinstance(ctf, pd.DataFrame):
        ctf = {c: ctf[c].to_numpy() for c in ctf.columns}
    if not isinstance(ctf, dict):
        raise TypeError("ctf must be None, False, True, or a dict / DataFrame of CTF parameters, "
                        f"got {type(ctf).__name__}")
    by_label = {label: key for key, (label, _) in _CTF_FIELDS.items()}
    params = {}
    for name, value in ctf.items():
        key = by_label.get(name, name)
        if key not in _CTF_FIELDS:
            raise ValueError(f"ctf has an unknown parameter {name!r}; expected keys among "
                             f"{sorted(_CTF_FIELDS)} or their RELION labels")
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim > 1 or (arr.ndim == 1 and arr.shape != (n,)):
            raise ValueError(f"ctf[{name!r}] must be a scalar or have shape ({n},), got shape "
                             f"{arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"ctf[{name!r}] must be finite, got {value!r}")
        params[key] = np.broadcast_to(arr, (n,)).copy()
    if "defocus_u" not in params:
        raise ValueError("ctf must give defocus_u (rlnDefocusU, Angstrom), got keys "
                         f"{sorted(ctf)}")
    params.setdefault("defocus_v", params["defocus_u"].copy())
    for key, (_, default) in _CTF_FIELDS.items():
        if key not in params and key not in _OPTIONAL_CTF:
            params[key] = np.full(n, default)
    if np.any(params["amplitude_contrast"] < 0) or np.any(params["amplitude_contrast"] >= 1):
        raise ValueError("ctf amplitude_contrast must lie in [0, 1), got "
                         f"{params['amplitude_contrast']!r}")
    return params


def _nufft_slices(vol, rotations, eps, cdtype, L=None, scale=1.0):
    """Central slices ``s^3 V(s (kx R[:, 0] + ky R[:, 1]))`` of the DFT of a voxel array.

    ``V(w) = sum_p vol[p] exp(-2 pi i w . p)`` with ``p`` the centred voxel coordinates, at the
    rfft grid ``ky = fftfreq(L)``, ``kx = rfftfreq(L)`` of ``L``-pixel images (default the
    volume size), for ``|k| <= 1/2`` and ``s |k| <= 1/2`` (zero outside), ``s = scale`` the
    voxel size over the pixel size (finufft).
    All images of the batch share one type-2 plan and one point set.

    Parameters
    ----------
    vol : ndarray, shape (L, L, L)
        Voxel array indexed ``[z, y, x]``.
    rotations : ndarray, shape (k, 3, 3)
    eps : float
        Requested relative accuracy.
    cdtype : numpy complex dtype
        complex64 (single-precision NUFFT) or complex128.

    Returns
    -------
    ndarray, shape (k, L, L // 2 + 1), ``cdtype``
    """
    import finufft

    L = vol.shape[0] if L is None else L
    ky, kx = np.meshgrid(np.fft.fftfreq(L), np.fft.rfftfreq(L), indexing="ij")
    inside = ky * ky + kx * kx <= 0.25 / max(1.0, scale) ** 2
    kxs, kys = kx[inside] * scale, ky[inside] * scale
    # 3D frequencies (x, y, z) in radians per voxel: (k, P, 3).
    w = 2.0 * np.pi * (kxs[None, :, None] * rotations[:, None, :, 0]
                       + kys[None, :, None] * rotations[:, None, :, 1])
    rdt = np.float32 if cdtype == np.complex64 else np.float64
    pts = [np.ascontiguousarray(w[..., a].reshape(-1), dtype=rdt) for a in (2, 1, 0)]
    # finufft's first mode axis pairs with its first coordinate: vol[z, y, x] -> (z, y, x).
    plan = finufft.Plan(2, vol.shape, eps=eps, isign=-1, dtype=np.dtype(cdtype).name)
    plan.setpts(*pts)
    vals = plan.execute(vol.astype(cdtype))
    if scale != 1.0:
        vals *= scale ** 3
    out = np.zeros((rotations.shape[0],) + inside.shape, dtype=cdtype)
    out[:, inside] = vals.reshape(rotations.shape[0], -1)
    return out


def _draw_poses(n, seed, rotations, offsets, max_shift):
    """Validated rotations (n, 3, 3) and offsets (n, 2) (pixels), drawn when None."""
    if rotations is None:
        rot = _uniform_rotations(n, seed)
    else:
        rot = np.array(rotations, dtype=np.float64)
        if rot.shape != (n, 3, 3):
            raise ValueError(f"rotations must have shape ({n}, 3, 3), got shape {rot.shape}")
        err = np.abs(rot @ np.swapaxes(rot, 1, 2) - np.eye(3)).max(initial=0.0)
        if not np.isfinite(err) or err > 1e-6 or np.any(np.linalg.det(rot) < 0):
            raise ValueError("rotations must be proper rotation matrices (orthonormal, "
                             f"det +1), got a deviation from orthonormality of {err:.3g}")
    if offsets is None:
        max_shift = check_float("max_shift", max_shift, min=0.0)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM_OFFSETS,)))
        u = rng.random((n, 2))
        r = max_shift * np.sqrt(u[:, 0])
        off = np.stack([r * np.cos(2 * np.pi * u[:, 1]), r * np.sin(2 * np.pi * u[:, 1])], 1)
    else:
        off = np.array(offsets, dtype=np.float64)
        if off.shape != (n, 2):
            raise ValueError(f"offsets must have shape ({n}, 2), got shape {off.shape}")
        if not np.all(np.isfinite(off)):
            raise ValueError("offsets must be finite (pixels)")
    return rot, off


def _rfft_ctf(table, idx, L, pixel_size, real_dtype):
    """CTFs of images ``idx`` in the rfft layout, (k, L, L // 2 + 1), one evaluation per
    distinct parameter set (``table``: the :func:`_ctf_table` dict)."""
    keys = list(table)
    rows = np.stack([table[k][idx] for k in keys], axis=1)
    uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
    full = evaluate_ctf(L, pixel_size, **dict(zip(keys, uniq.T)))
    full = np.fft.ifftshift(full, axes=(1, 2))          # zero frequency at [0, 0]
    half = full[:, :, :L // 2 + 1].copy()
    if L % 2 == 0:
        # rfft column L/2 is kx = +1/2; the full grid holds kx = -1/2, and CTF(k) = CTF(-k).
        half[:, :, L // 2] = full[:, (-np.arange(L)) % L, L // 2]
    return half[inverse.reshape(-1)].astype(real_dtype, copy=False)


def _relion_metadata(euler, off, pixel_size, ctf):
    """RELION columns of a simulation: angles (degrees), origins (Angstrom) and CTF."""
    md = pd.DataFrame({
        "rlnAngleRot": np.rad2deg(euler[:, 0]),
        "rlnAngleTilt": np.rad2deg(euler[:, 1]),
        "rlnAnglePsi": np.rad2deg(euler[:, 2]),
        "rlnOriginXAngst": -off[:, 0] * pixel_size,
        "rlnOriginYAngst": -off[:, 1] * pixel_size,
    })
    for key, values in (ctf or {}).items():
        md[_CTF_FIELDS[key][0]] = values
    return md
