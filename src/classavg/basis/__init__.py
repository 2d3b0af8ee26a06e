"""Steerable bases on the disk: Fourier-Bessel coefficients, rotation and reflection."""

from .fourier_bessel import FourierBesselBasis2D

__all__ = ["FourierBesselBasis2D"]
