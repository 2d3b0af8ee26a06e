"""MRC image stacks: header inspection, memory-mapped batched reading, batched writing.

Stacks are opened with ``mrcfile.mmap(path, mode='r', permissive=True)`` once per file and their
data maps kept in a process-wide LRU cache (keyed by path; a file replaced on disk -- new inode,
size or modification time -- is re-opened).  Reading copies out only the requested
images, so memory is bounded by the batch, never by the stack.

Supported data modes: 0 (int8), 1 (int16), 2 (float32), 6 (uint16) and 12 (float16); the pixels
are converted to the requested float dtype.  A 2D MRC file (a single image) is a stack of one.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from .._progress import progress
from ._errors import DataFileNotFoundError, StackError

__all__ = ["StackHeader", "read_stack_header", "read_stack_images", "write_stack",
           "clear_stack_cache", "SUPPORTED_MODES"]

logger = logging.getLogger(__name__)

#: MRC data modes that can be read, with the numpy dtype of their pixels.
SUPPORTED_MODES = {0: np.int8, 1: np.int16, 2: np.float32, 6: np.uint16, 12: np.float16}

_HEADER_BYTES = 1024


@dataclass(frozen=True)
class StackHeader:
    """What the header of an MRC image stack says.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    n : int
        Number of images (``nz``; 1 for a 2D file).
    ny, nx : int
        Image rows and columns in pixels.
    mode : int
        MRC data mode.
    voxel_size : float
        Pixel size in Angstrom from the header (cell size / grid), 0 when unset.
    """

    path: Path
    n: int
    ny: int
    nx: int
    mode: int
    voxel_size: float


def _warning_text(caught):
    return "; ".join(dict.fromkeys(str(w.message) for w in caught))


def read_stack_header(path) -> StackHeader:
    """Read and check the header of an MRC stack without reading any pixel data.

    Parameters
    ----------
    path : str or os.PathLike
        The MRC file (``.mrc`` or ``.mrcs``).

    Returns
    -------
    StackHeader

    Raises
    ------
    DataFileNotFoundError
        The file does not exist.
    StackError
        The header cannot be read, the mode is unsupported, the grid is empty or the file is
        shorter than the header says.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(f"MRC stack {str(path)!r} does not exist")
    # The sizes first, from the 1024 header bytes alone: mrcfile would allocate the extended
    # header the file claims (2 GiB for a 17 KB file, or for /etc/passwd) before any check.
    expected, size = _check_sizes(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with mrcfile.open(path, mode="r", permissive=True, header_only=True) as mrc:
                h = mrc.header
                nx, ny, nz = int(h.nx), int(h.ny), int(h.nz)
                mode, nsymbt = int(h.mode), int(h.nsymbt)
                try:
                    voxel = float(mrc.voxel_size.x)
                except (ValueError, ZeroDivisionError, FloatingPointError):
                    voxel = 0.0
        except Exception as exc:  # mrcfile raises several types on garbage input
            raise StackError(f"cannot read the header of MRC stack {str(path)!r}: {exc}; "
                             "expected an MRC/MRCS file") from exc
    notes = _warning_text(caught)
    if mode not in SUPPORTED_MODES:
        raise StackError(
            f"MRC stack {str(path)!r} has data mode {mode}; expected one of "
            f"{sorted(SUPPORTED_MODES)} (int8, int16, float32, uint16, float16)"
            + (f" [header problems: {notes}]" if notes else ""))
    if nx < 1 or ny < 1 or nz < 1:
        raise StackError(f"MRC stack {str(path)!r} has an empty grid nx={nx} ny={ny} nz={nz}; "
                         "expected positive sizes" + (f" [{notes}]" if notes else ""))
    itemsize = np.dtype(SUPPORTED_MODES[mode]).itemsize
    expected = _HEADER_BYTES + max(nsymbt, 0) + nx * ny * nz * itemsize
    size = path.stat().st_size
    if size < expected:
        raise StackError(f"MRC stack {str(path)!r} is truncated: {size} bytes, expected at least "
                         f"{expected} for {nz} images of {ny}x{nx} pixels in mode {mode}")
    if size > expected:
        logger.warning("MRC stack %s is larger than its header says: %d bytes, expected %d for "
                       "%d images of %dx%d pixels in mode %d (extra bytes are ignored)",
                       path, size, expected, nz, ny, nx, mode)
    if notes:
        logger.warning("MRC stack %s: %s", path, notes)
    if not np.isfinite(voxel) or voxel < 0:
        voxel = 0.0
    return StackHeader(path=path, n=nz, ny=ny, nx=nx, mode=mode, voxel_size=voxel)


def _check_sizes(path):
    """``(expected, actual)`` file size of an MRC file from its raw header, checked.

    Reads only the 1024-byte header: grid (words 1-3), mode (4) and extended-header size
    (``nsymbt``, word 24), in the byte order of the machine stamp (byte 213: 0x11 is big
    endian).  Raises StackError when the file is shorter than the header, the mode is not
    supported, a size is negative, or the file is shorter than header + extended header +
    data: nothing is allocated from the header's claims.
    """
    size = path.stat().st_size
    if size < _HEADER_BYTES:
        raise StackError(f"MRC stack {str(path)!r} has {size} bytes, fewer than the "
                         f"{_HEADER_BYTES}-byte MRC header; expected an MRC/MRCS file")
    with open(path, "rb") as f:
        head = f.read(_HEADER_BYTES)
    order = ">" if head[212] == 0x11 else "<"
    words = np.frombuffer(head, dtype=order + "i4", count=24)
    nx, ny, nz, mode = (int(w) for w in words[:4])
    nsymbt = int(words[23])
    if mode not in SUPPORTED_MODES:
        raise StackError(
            f"MRC stack {str(path)!r} has data mode {mode}; expected one of "
            f"{sorted(SUPPORTED_MODES)} (int8, int16, float32, uint16, float16)"
            + ("" if head[208:212] == b"MAP " else " (no 'MAP ' identifier: not an MRC file?)"))
    if min(nx, ny, nz) < 1 or nsymbt < 0:
        raise StackError(f"MRC stack {str(path)!r} has an empty or negative grid nx={nx} "
                         f"ny={ny} nz={nz} (extended header {nsymbt} bytes); expected positive "
                         "sizes")
    itemsize = np.dtype(SUPPORTED_MODES[mode]).itemsize
    expected = _HEADER_BYTES + nsymbt + nx * ny * nz * itemsize      # Python ints: exact
    if size < expected:
        raise StackError(f"MRC stack {str(path)!r} is truncated: {size} bytes, expected at least "
                         f"{expected} ({_HEADER_BYTES} header + {nsymbt} extended header + "
                         f"{nz} images of {ny}x{nx} pixels in mode {mode})")
    return expected, size


def _default_cache_size():
    """Open maps each hold a file descriptor: stay well below the process limit."""
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 128
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 1024
    return int(max(16, min(1024, soft // 4)))


class _MmapCache:
    """A thread-safe LRU of memory-mapped stacks.

    Each file is opened with ``mrcfile.mmap(path, mode='r', permissive=True)``; the data map
    is kept (it holds its own descriptor) and the ``mrcfile`` object closed.  An evicted map
    is released when no array refers to it any more (reads return copies, so at once).
    """

    def __init__(self, maxsize=None):
        self.maxsize = _default_cache_size() if maxsize is None else maxsize
        self._lock = threading.Lock()
        self._maps = OrderedDict()  # str(path) -> ((inode, size, mtime), (n, ny, nx) array)
        self._offsets = {}          # str(path) -> byte offset of the data

    def get(self, path: Path) -> np.ndarray:
        key = str(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise DataFileNotFoundError(f"MRC stack {key!r} does not exist") from None
        sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            entry = self._maps.get(key)
            if entry is not None and entry[0] == sig:
                self._maps.move_to_end(key)
                return entry[1]
            stack, self._offsets[key] = self._open(path)
            self._maps[key] = (sig, stack)
            self._maps.move_to_end(key)
            while len(self._maps) > self.maxsize:
                self._maps.popitem(last=False)
            return stack

    def get_with_offset(self, path: Path):
        """``(map, byte offset of the data)`` of a stack."""
        stack = self.get(path)
        return stack, self._offsets[str(path)]

    @staticmethod
    def _open(path):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                mrc = mrcfile.mmap(path, mode="r", permissive=True)
            except Exception as exc:
                raise StackError(f"cannot open MRC stack {str(path)!r}: {exc}") from exc
        try:
            data = mrc.data
            mode = int(mrc.header.mode)
            offset = int(mrc.header.nbytes + mrc.extended_header.nbytes)
        finally:
            mrc.close()  # the map stays valid; only the mrcfile stream is closed
        if data is None:
            raise StackError(f"cannot read the data of MRC stack {str(path)!r}: "
                             f"{_warning_text(caught)}; expected a readable MRC/MRCS file")
        if mode not in SUPPORTED_MODES:
            raise StackError(f"MRC stack {str(path)!r} has data mode {mode}; expected one of "
                             f"{sorted(SUPPORTED_MODES)}")
        return data.reshape(-1, data.shape[-2], data.shape[-1]), offset

    def clear(self):
        with self._lock:
            self._maps.clear()


_CACHE = _MmapCache()


def clear_stack_cache() -> None:
    """Forget every cached MRC map (stacks are re-opened on demand)."""
    _CACHE.clear()


def read_stack_images(path, indices, dtype=np.float32) -> np.ndarray:
    """Read some images of an MRC stack through the memory map.

    Parameters
    ----------
    path : str or os.PathLike
        The MRC stack.
    indices : array_like of int, shape (k,)
        0-based image indices in the stack (any order, repeats allowed).
    dtype : numpy dtype, optional
        dtype of the result (default float32).

    Returns
    -------
    ndarray, shape (k, ny, nx)
        A copy of the requested images; nothing else of the stack is read.
    """
    stack, offset = _CACHE.get_with_offset(Path(path))
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= stack.shape[0]):
        raise StackError(f"image index out of range for MRC stack {str(path)!r} of "
                         f"{stack.shape[0]} images: got 0-based indices {idx.min()}..{idx.max()}")
    if idx.size == 0:
        return np.empty((0,) + stack.shape[1:], dtype=dtype)
    step = np.diff(idx)
    if np.all(step == 1):
        # A contiguous run: one plain read.  Through the page cache, not the map, so that
        # streaming over a stack larger than memory does not count the file in the
        # process's resident memory (pages touched through a map do).
        per = stack.shape[1] * stack.shape[2]
        with open(path, "rb") as f:
            flat = np.fromfile(f, dtype=stack.dtype, count=idx.size * per,
                               offset=offset + int(idx[0]) * per * stack.dtype.itemsize)
        return flat.reshape((idx.size,) + stack.shape[1:]).astype(dtype, copy=False)
    if np.all(step >= 0):  # sorted: the file is read front to back already
        out = np.array(stack[idx], dtype=dtype)
    else:
        order = np.argsort(idx, kind="stable")  # read the file front to back
        out = np.empty((idx.size,) + stack.shape[1:], dtype=dtype)
        out[order] = stack[idx[order]]
    _release_pages(stack)
    return out


def _release_pages(stack):
    """Drop the pages of a read-only stack map from this process's resident memory.

    Scattered reads go through the map; its touched pages (plus the kernel's fault-around)
    would otherwise stay mapped and count as resident memory of the process (2 GB after the
    fit subset of a 1,000,000-image stack).  The data stay in the page cache.
    """
    mm = getattr(stack, "_mmap", None)
    if mm is not None and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):       # pragma: no cover - best effort
            pass


def write_stack(path, batches, *, n, L, pixel_size, desc="writing stack"):
    """Write ``n`` float32 images of ``L x L`` into a new MRC stack, one batch at a time.

    The file is created with ``mrcfile.new_mmap`` (mode 2, image-stack header, ``voxel_size`` =
    ``pixel_size``) and filled batch by batch, so memory stays at one batch.  The header
    statistics (min, max, mean, rms) are accumulated over the batches.

    Parameters
    ----------
    path : str or os.PathLike
        Output file (overwritten if it exists).
    batches : iterable of (indices, images)
        ``indices`` (k,) consecutive 0-based positions, ``images`` (k, L, L), as yielded by
        :meth:`classavg.sources.ImageSource.iter_batches`.
    n, L : int
        Number and size of the images.
    pixel_size : float
        Pixel size in Angstrom.
    """
    count, total, total_sq = 0, 0.0, 0.0
    dmin, dmax = np.inf, -np.inf
    # The header (and a sparse file of the final size) first; the data then go in with plain
    # writes, so a stack larger than memory never sits in the process's resident memory
    # (pages written through a map would, until written back).
    with mrcfile.new_mmap(path, shape=(n, L, L), mrc_mode=2, overwrite=True) as mrc:
        mrc.set_image_stack()
        mrc.voxel_size = float(pixel_size)
        offset = int(mrc.header.nbytes + mrc.extended_header.nbytes)
        dtype = mrc.data.dtype
    with open(path, "r+b") as f:
        for idx, imgs in progress(batches, total=None, desc=desc, unit="batch"):
            idx = np.asarray(idx)
            if idx.size == 0:
                continue
            imgs = np.asarray(imgs, dtype=dtype)
            start, stop = int(idx[0]), int(idx[-1]) + 1
            if stop - start == idx.size and np.all(np.diff(idx) == 1):
                f.seek(offset + start * L * L * dtype.itemsize)
                f.write(np.ascontiguousarray(imgs).tobytes())
            else:
                f.flush()
                data = np.memmap(path, dtype=dtype, mode="r+", offset=offset, shape=(n, L, L))
                data[idx] = imgs
                data.flush()
                del data
            flat = imgs.reshape(-1).astype(np.float32, copy=False)
            count += flat.size
            total += float(flat.sum(dtype=np.float64))
            total_sq += float(np.dot(flat, flat))
            dmin = min(dmin, float(flat.min()))
            dmax = max(dmax, float(flat.max()))
    with mrcfile.mmap(path, mode="r+") as mrc:
        if count:
            mean = total / count
            mrc.header.dmin = dmin
            mrc.header.dmax = dmax
            mrc.header.dmean = mean
            mrc.header.rms = np.sqrt(max(total_sq / count - mean * mean, 0.0))
