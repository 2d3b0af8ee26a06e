"""Array backends: numpy on the CPU (default), CuPy on an NVIDIA GPU (``device="cuda"``).

The hot kernels of the classification (Fourier-Bessel expansion, bispectrum transform,
neighbour search, rotational alignment of candidates) are written once against an array
namespace ``xp``; :func:`array_module` gives numpy for ``"cpu"`` and cupy for ``"cuda"``
(``pip install 'classavg[gpu]'``, which brings CuPy and cuFINUFFT).  Inputs are moved to the
device per block and results come back to the host as numpy arrays, so everything outside the
kernels, and every test, runs unchanged without a GPU.
"""

from __future__ import annotations

from ._validation import check_choice

__all__ = ["check_device", "array_module", "namespace_of", "to_device", "to_host", "fft"]

DEVICES = ("cpu", "cuda")


def check_device(device):
    """Validate a device name ("cpu" or "cuda"); "cuda" needs CuPy."""
    device = check_choice("device", device, DEVICES)
    if device == "cuda":
        array_module(device)
    return device


def array_module(device):
    """numpy for "cpu", cupy for "cuda"."""
    if device == "cpu":
        import numpy
        return numpy
    try:
        import cupy
    except ImportError as exc:
        raise ImportError("device='cuda' needs CuPy and cuFINUFFT: "
                          "pip install 'classavg[gpu]'") from exc
    return cupy


def to_device(x, xp):
    """``x`` as an array of the namespace ``xp`` (no copy when it already is one)."""
    return xp.asarray(x)


def to_host(x):
    """A numpy array from a numpy or cupy array."""
    get = getattr(x, "get", None)
    return get() if callable(get) else x


def namespace_of(x):
    """numpy for a numpy array, cupy for a cupy array."""
    import numpy
    if isinstance(x, numpy.ndarray) or numpy.isscalar(x):
        return numpy
    return array_module("cuda")


def fft(name, x, **kwargs):
    """``scipy.fft.<name>(x, workers=-1, ...)`` on the CPU, ``cupy.fft.<name>`` on the GPU."""
    import numpy
    if isinstance(x, numpy.ndarray):
        import scipy.fft
        return getattr(scipy.fft, name)(x, workers=-1, **kwargs)
    return getattr(array_module("cuda").fft, name)(x, **kwargs)
