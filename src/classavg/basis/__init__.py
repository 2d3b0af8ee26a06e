"""Steerable bases on the disk: Fourier-Bessel coefficients, rotation and reflection."""

from .dense import DenseFBTransform
from .fourier_bessel import FourierBesselBasis2D

__all__ = ["FourierBesselBasis2D", "DenseFBTransform"]
