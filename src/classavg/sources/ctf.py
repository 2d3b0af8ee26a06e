"""Contrast transfer function (CTF) of the electron microscope, RELION convention.

The CTF multiplies the Fourier transform of a projection::

    CTF(k) = sin(pi * lam * dz(phi) * |k|^2 - pi / 2 * Cs * lam^3 * |k|^4 + phase_shift + w)
             * exp(-B * |k|^2 / 4)

with the electron wavelength ``lam`` (Angstrom) from the voltage, the astigmatic defocus
``dz(phi) = (dU + dV) / 2 + (dU - dV) / 2 * cos(2 (phi - angle))`` (Angstrom, positive =
underfocus), spherical aberration ``Cs`` (mm, converted to Angstrom), amplitude contrast ``Q``
giving ``w = atan(Q / sqrt(1 - Q^2))``, and spatial frequency ``k`` in 1/Angstrom.  This is
RELION's ``CTF::getCTF`` (Scheres, J. Struct. Biol. 2012), which negates the defocus and returns
``-sin(-(chi + w + phase_shift))``; the amplitude-contrast phase therefore *adds* to the
aberration phase, so the CTF starts at ``sin(w) > 0`` and has its first zero where
``chi + w = pi``.  Simulated data and
phase flipping agree with RELION.
"""

from __future__ import annotations

import numpy as np

from .._grid import frequency_grid

__all__ = ["electron_wavelength", "evaluate_ctf", "rfft_layout"]


def electron_wavelength(voltage_kv):
    """Relativistic electron wavelength in Angstrom for an accelerating voltage in kV."""
    v = np.asarray(voltage_kv, dtype=np.float64) * 1e3
    return 12.2642598 / np.sqrt(v * (1.0 + 0.978466e-6 * v))


def evaluate_ctf(L, pixel_size, defocus_u, defocus_v, defocus_angle=0.0, *, voltage=300.0,
                 cs=2.7, amplitude_contrast=0.1, phase_shift=0.0, bfactor=0.0,
                 dtype=np.float64):
    """Evaluate CTFs on the centred 2D frequency grid of an L x L image.

    Parameters
    ----------
    L : int
        Image size in pixels.
    pixel_size : float
        Pixel size in Angstrom.
    defocus_u, defocus_v : float or array_like, shape (k,)
        Defocus values in Angstrom (positive = underfocus).
    defocus_angle : float or array_like, shape (k,)
        Astigmatism angle in degrees (RELION ``_rlnDefocusAngle``).
    voltage : float or array_like
        Accelerating voltage in kV.
    cs : float or array_like
        Spherical aberration in mm.
    amplitude_contrast : float or array_like
        Amplitude contrast fraction Q in [0, 1).
    phase_shift : float or array_like
        Phase-plate shift in degrees.
    bfactor : float or array_like
        Envelope B-factor in Angstrom^2.

    Returns
    -------
    ndarray, shape (k, L, L)
        CTF values laid out like ``np.fft.fftshift(np.fft.fft2(img))`` (zero frequency at
        ``(L // 2, L // 2)``).  A scalar input gives k = 1.
    """
    args = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in
          (defocus_u, defocus_v, defocus_angle, voltage, cs, amplitude_contrast,
           phase_shift, bfactor)))
    table = np.stack(args, axis=1)
    if table.shape[0] > 1:
        # Particles share CTFs (one per micrograph, or per defocus group): evaluate each
        # distinct parameter set once (10,000 simulated particles in 7 groups: 4.7 s -> 0.01 s).
        unique, inverse = np.unique(table, axis=0, return_inverse=True)
        if unique.shape[0] < table.shape[0]:
            return evaluate_ctf(L, pixel_size, *unique.T[:3], voltage=unique[:, 3],
                                cs=unique[:, 4], amplitude_contrast=unique[:, 5],
                                phase_shift=unique[:, 6], bfactor=unique[:, 7],
                                dtype=dtype)[inverse.ravel()]
    du, dv, ang, volt, cs_mm, q, ps, b = (a[:, None, None] for a in args)
    ky, kx = frequency_grid(int(L))
    ky = ky / pixel_size
    kx = kx / pixel_size
    k2 = kx * kx + ky * ky
    phi = np.arctan2(ky, kx)
    lam = electron_wavelength(volt)
    # cos(2 (phi - a)) = cos 2phi cos 2a + sin 2phi sin 2a: the grid's cos 2phi and sin 2phi
    # once, times k^2, so each image costs two multiply-adds and one sine per pixel.
    c2, s2 = np.cos(2.0 * phi) * k2, np.sin(2.0 * phi) * k2
    a2 = 2.0 * np.deg2rad(ang)
    cs_a = cs_mm * 1e7
    w = np.arctan(q / np.sqrt(1.0 - q * q))
    half = 0.5 * (du - dv)
    gamma = (np.pi * lam) * (0.5 * (du + dv) * k2 + (half * np.cos(a2)) * c2
                             + (half * np.sin(a2)) * s2)
    gamma -= (0.5 * np.pi * cs_a * lam ** 3) * (k2 * k2)
    gamma += np.deg2rad(ps) + w
    ctf = np.sin(gamma, out=gamma)
    if np.any(b != 0):
        ctf = ctf * np.exp(-b * k2 / 4.0)
    return ctf.astype(dtype, copy=False)


def rfft_layout(full):
    """CTFs on the ``fftshift`` grid (..., L, L) -> the ``rfft2`` half plane (..., L, L//2+1)."""
    L = full.shape[-1]
    f = np.fft.ifftshift(full, axes=(-2, -1))
    half = f[..., :L // 2 + 1].copy()
    if L % 2 == 0:
        # rfft column L/2 is kx = +1/2; the full grid holds kx = -1/2, and CTF(k) = CTF(-k).
        half[..., L // 2] = f[..., (-np.arange(L)) % L, L // 2]
    return half
