"""Image sources: lazy, batched stacks of particle images and their metadata."""

from .base import ArrayImageSource, ImageSource
from .ctf import evaluate_ctf

__all__ = ["ImageSource", "ArrayImageSource", "evaluate_ctf"]
