"""Classification: rotation-invariant features and neighbour tables."""

from .base import Class2D
from .bispectrum import BispectrumPCA
from .fspca import SteerablePCA, estimate_noise_variance
from .rir import RIRClass2D

__all__ = ["Class2D", "RIRClass2D", "SteerablePCA", "BispectrumPCA", "estimate_noise_variance"]
