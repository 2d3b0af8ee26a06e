"""The MRC stacks behind a particle table that is not a STAR file (cryoSPARC ``.cs``, a bare
stack): locate, check and read them.

:class:`StackSet` holds, for ``n`` particle rows, the stack each row is in and its 0-based
image number within that stack.  Stacks are located once (``locate(name)`` returns the path or
raises), their headers checked (square images, one box size, enough images) and their images
read through the process-wide memory-map cache of :mod:`classavg.io.mrc`, with NaN/Inf pixels
refused.  Messages name the input file and the row through ``describe_row``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._errors import StackError
from .mrc import read_stack_header, read_stack_images

__all__ = ["StackSet"]


class StackSet:
    """Stacks and image numbers of ``n`` particle rows.

    Parameters
    ----------
    stacks : sequence of str, length n
        The stack of every row, as the input file names it.
    local : array_like of int, shape (n,)
        0-based image number of every row within its stack.
    locate : callable
        ``locate(name, row) -> pathlib.Path`` (absolute); raises when the stack is missing.
    where : str
        The input file, for messages (``"cryoSPARC file 'x.cs'"``).
    describe_row : callable
        ``describe_row(r) -> str`` for 0-based row ``r`` (``"row 3 (blob/path ...)"``).
    """

    def __init__(self, stacks, local, *, locate, where, describe_row):
        codes, uniques = pd.factorize(pd.Series(list(stacks), dtype=object))
        self.stack_id = codes.astype(np.int64)
        self.local = np.asarray(local, dtype=np.int64)
        self.names = [str(u) for u in uniques]
        self._locate = locate
        self._where = where
        self._describe = describe_row
        k = len(self.names)
        self._max_local = np.full(k, -1, dtype=np.int64)
        np.maximum.at(self._max_local, self.stack_id, self.local)
        self._paths = [None] * k
        self._checked = np.zeros(k, dtype=bool)
        self.L = None

    def first_row(self, sid, mask=None):
        """0-based index of the first row in stack ``sid`` (and ``mask``)."""
        hit = self.stack_id == sid
        return int(np.flatnonzero(hit if mask is None else hit & mask)[0])

    def path(self, sid):
        """Absolute path of stack ``sid`` (located on first use)."""
        if self._paths[sid] is None:
            self._paths[sid] = self._locate(self.names[sid], self.first_row(sid))
        return self._paths[sid]

    @property
    def paths(self):
        """Absolute paths of every stack, in order of first appearance."""
        return [self.path(s) for s in range(len(self.names))]

    def header(self, sid):
        """The checked header of stack ``sid`` (square images of one size, enough of them)."""
        path = self.path(sid)
        try:
            hdr = read_stack_header(path)
        except StackError as exc:
            raise StackError(f"{exc} (named by {self._describe(self.first_row(sid))} of "
                             f"{self._where})") from exc
        if self._checked[sid]:
            return hdr
        row = self._describe(self.first_row(sid))
        if hdr.ny != hdr.nx:
            raise StackError(f"MRC stack {str(path)!r} ({row} of {self._where}) holds "
                             f"non-square {hdr.ny}x{hdr.nx} (rows x columns) images; expected "
                             "square images")
        if self.L is None:
            self.L = hdr.ny
        elif hdr.ny != self.L:
            raise StackError(f"MRC stack {str(path)!r} ({row} of {self._where}) holds "
                             f"{hdr.ny}x{hdr.nx} images but stack {str(self.path(0))!r} holds "
                             f"{self.L}x{self.L}; expected one box size for all stacks")
        if self._max_local[sid] >= hdr.n:
            r = self.first_row(sid, self.local >= hdr.n)
            raise StackError(f"{self._where}: {self._describe(r)} asks for image "
                             f"{self.local[r] + 1} (1-based) of MRC stack {str(path)!r}, which "
                             f"holds {hdr.n} image(s); expected at most {hdr.n}")
        self._checked[sid] = True
        return hdr

    def check_all(self):
        """Check every stack now (existence, shape, image count)."""
        for sid in range(len(self.names)):
            self.header(sid)

    def read(self, indices, dtype):
        """Images of rows ``indices`` (1-D int64), shape (len(indices), L, L), ``dtype``."""
        indices = np.asarray(indices, dtype=np.int64)
        sid = self.stack_id[indices]
        order = np.argsort(sid, kind="stable")
        bounds = np.flatnonzero(np.diff(sid[order])) + 1
        groups = np.split(order, bounds) if indices.size else []
        out = None if len(groups) == 1 else np.empty((indices.size, self.L, self.L), dtype)
        for pos in groups:
            s = int(sid[pos[0]])
            self.header(s)
            imgs = read_stack_images(self._paths[s], self.local[indices[pos]], dtype)
            finite = np.isfinite(imgs.sum(axis=(1, 2), dtype=np.float64))
            if not finite.all():
                r = int(indices[pos[int(np.flatnonzero(~finite)[0])]])
                raise StackError(f"MRC stack {str(self._paths[s])!r}: image "
                                 f"{self.local[r] + 1} ({self._describe(r)} of "
                                 f"{self._where}) holds NaN or Inf pixels; expected finite "
                                 "values")
            if out is None:
                return imgs
            out[pos] = imgs
        return out
