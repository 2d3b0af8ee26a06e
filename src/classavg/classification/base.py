"""The :class:`Class2D` interface: a classifier returns a neighbour table."""

from __future__ import annotations

from abc import ABC, abstractmethod

from .._tags import Tags

__all__ = ["Class2D"]


class Class2D(ABC):
    """Groups images that show the same view (up to in-plane rotation and mirror).

    Parameters
    ----------
    src : ImageSource
        The images to classify.

    Attributes
    ----------
    tags : Tags
        What the classifier takes (:mod:`classavg._tags`): subclasses declare ``device``,
        ``client`` (``classify(client=...)``) and ``random`` (a ``seed``).
    """

    tags = Tags()

    def __init__(self, src):
        self.src = src

    @abstractmethod
    def classify(self):
        """Find the nearest neighbours of every image.

        Returns
        -------
        class_indices : ndarray of int, shape (n, n_nbor)
            Row c lists image c itself (column 0), then its neighbours by increasing distance.
        class_refl : ndarray of bool, shape (n, n_nbor)
            True where the neighbour matches the reference after mirroring (``y -> -y``).
        class_distances : ndarray of float, shape (n, n_nbor)
            Feature-space distances; column 0 is 0.
        """
