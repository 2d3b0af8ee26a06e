"""classavg._threads.limit_threads: what ``--j`` sets."""

import numpy as np
import pytest
import scipy.fft
from threadpoolctl import threadpool_info

from classavg._threads import limit_threads


def _blas_threads():
    return {m["num_threads"] for m in threadpool_info() if m["user_api"] == "blas"}


@pytest.mark.parametrize("n", [1, 2])
def test_limits_blas_and_fft_workers(n):
    np.dot(np.ones((4, 4)), np.ones((4, 4)))            # BLAS loaded
    before_workers, before_blas = scipy.fft.get_workers(), _blas_threads()
    with limit_threads(n):
        assert scipy.fft.get_workers() == n
        assert _blas_threads() <= {n} or not before_blas
    assert scipy.fft.get_workers() == before_workers
    assert _blas_threads() == before_blas


def test_none_changes_nothing():
    before = (scipy.fft.get_workers(), _blas_threads())
    with limit_threads(None):
        assert (scipy.fft.get_workers(), _blas_threads()) == before
