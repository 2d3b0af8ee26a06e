"""Image sources: lazy, batched stacks of particle images and their metadata."""

from .base import ArrayImageSource, ImageSource
from .centering import CenteredSource
from .chain import SourceChain, resolve_chain
from .ctf import evaluate_ctf
from .junk import JUNK_KINDS, KINDS
from .molecules import available_molecules, molecule_path
from .noise import ice_psd
from .simulation import Simulation, load_ground_truth, simulate_dataset
from .transforms import (BackgroundNormalizedSource, CastSource, DerivedSource,
                         DownsampledSource, InvertedContrastSource, PhaseFlippedSource)
from .whitening import WhitenedSource, estimate_noise_psd
from .volume import GaussianBlobVolume, default_volume, load_volume

__all__ = ["ImageSource", "ArrayImageSource", "DerivedSource", "DownsampledSource",
           "PhaseFlippedSource", "BackgroundNormalizedSource", "InvertedContrastSource",
           "CastSource", "SourceChain", "resolve_chain", "evaluate_ctf", "Simulation",
           "simulate_dataset", "load_ground_truth", "GaussianBlobVolume", "default_volume",
           "load_volume", "WhitenedSource", "estimate_noise_psd", "CenteredSource",
           "JUNK_KINDS", "KINDS", "available_molecules", "molecule_path", "ice_psd"]
