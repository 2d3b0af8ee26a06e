"""Shared helpers of the selection tests: random neighbour tables and a fake averager whose
averages have an exactly known variance per class (fast and exact, no alignment search)."""

from __future__ import annotations

import numpy as np
import pytest

from classavg.averaging.base import AlignmentResult, Averager2D


def random_table(n, n_nbor, seed=0, n_images=None, ties=False):
    """A valid neighbour table: row c = [c, random others]; distances increase along rows."""
    rng = np.random.default_rng(seed)
    n_images = n if n_images is None else n_images
    ci = np.empty((n, n_nbor), dtype=np.int64)
    ci[:, 0] = np.arange(n)
    if n_nbor > 1:
        ci[:, 1:] = rng.integers(0, n_images, (n, n_nbor - 1))
    cr = rng.random((n, n_nbor)) < 0.3
    cr[:, 0] = False
    if ties:
        steps = rng.integers(0, 3, (n, n_nbor)).astype(float)
    else:
        steps = rng.random((n, n_nbor))
    steps[:, 0] = 0
    cd = np.cumsum(steps, axis=1)
    return ci, cr, cd


def checkerboard(L):
    """(L, L) pattern of +-1 (even L): mean 0, variance exactly 1."""
    i = np.arange(L)
    return np.where((i[:, None] + i[None, :]) % 2 == 0, 1.0, -1.0)


def check_repulsion(sel, ci, exclude_k, full=True):
    """No selected class's reference is a member (first exclude_k columns) of an earlier
    selected class; with ``full``, every rejected class was excluded by an accepted one."""
    k = ci.shape[1] if exclude_k is None else min(exclude_k, ci.shape[1])
    seen = set()
    for c in sel:
        assert ci[c, 0] not in seen, f"class {c} repelled by an earlier class"
        seen.update(ci[c, :k].tolist())
    if full:
        rejected = np.setdiff1d(np.arange(ci.shape[0]), sel)
        assert all(ci[c, 0] in seen for c in rejected)


class FakeAverager(Averager2D):
    """Average of a row = ``sqrt(variances[reference]) * checkerboard``: variance known exactly.

    Records every call.  With ``alignment=True`` it sets :attr:`alignment` after each call
    like :class:`AligningAverager2D`, rows numbered relative to the batch passed and listed in
    a scrambled order (so that a selector must map them back), with
    ``rotations[row] = class_indices[row] / 1000`` (identifies the row by its members).
    """

    def __init__(self, variances, L=8, *, batch_size=4, dtype=np.float32, alignment=False):
        # No source / basis needed: do not call Averager2D.__init__.
        self.variances = np.asarray(variances, dtype=np.float64)
        self.L = L
        self.batch_size = batch_size
        self.dtype = dtype
        self.with_alignment = alignment
        self.alignment = None
        self.calls = []

    def image(self, ref):
        return (np.sqrt(self.variances[ref]) * checkerboard(self.L)).astype(self.dtype)

    def average(self, class_indices, class_refl):
        ci = np.asarray(class_indices)
        self.calls.append(ci[:, 0].copy())
        out = np.stack([self.image(r) for r in ci[:, 0]]) if len(ci) else \
            np.zeros((0, self.L, self.L), self.dtype)
        if self.with_alignment:
            k, m = ci.shape
            perm = np.random.default_rng(len(self.calls)).permutation(k)
            rot = ci[perm] / 1000.0
            self.alignment = AlignmentResult(perm.astype(np.int64), rot,
                                             np.stack([rot, -rot], axis=-1), rot * 2)
        return out


@pytest.fixture
def table():
    return random_table(60, 6, seed=1)
