"""Thread-pool control for the hot loops.

numpy hands every matrix product to the BLAS library, which by default runs as many threads
as cores.  For the thousands of *small* products of the basis transforms and the FTK search,
those threads only add synchronisation, and on a small machine they compete for the cores
with finufft's OpenMP threads and pocketfft's workers: on 2 vCPUs the Fourier-Bessel
expansion of 10,000 64 x 64 images takes 5.9 s with 2 OpenBLAS threads and 3.0 s with 1.
:func:`single_thread_blas` limits BLAS to one thread while a block runs (process-wide, then
restored), without touching the other thread pools.
"""

from __future__ import annotations

from threadpoolctl import ThreadpoolController

__all__ = ["single_thread_blas", "limit_threads"]

_controller: ThreadpoolController | None = None


def single_thread_blas():
    """Context manager limiting BLAS to one thread while it is active.

    The library scan of :class:`threadpoolctl.ThreadpoolController` runs once, on first use
    (not at import), so entering the context costs microseconds.
    """
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def limit_threads(n):
    """Context manager running the block with at most ``n`` threads per thread pool.

    Limits, through :mod:`threadpoolctl`, every BLAS library (OpenBLAS, MKL) and every OpenMP
    runtime loaded at entry (finufft's NUFFTs run on OpenMP), and sets
    :func:`scipy.fft.set_workers` for the FFTs that take the default worker count.  FFTs
    that ask for ``workers=-1`` explicitly still use every core.  ``n=None`` changes nothing.
    Process-wide while active, then restored; Dask workers are configured separately (their
    own thread count).
    """
    import contextlib

    if n is None:
        return contextlib.nullcontext()
    import scipy.fft

    stack = contextlib.ExitStack()
    stack.enter_context(ThreadpoolController().limit(limits=int(n)))
    stack.enter_context(scipy.fft.set_workers(int(n)))
    return stack
