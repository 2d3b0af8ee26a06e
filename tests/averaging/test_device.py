"""The averagers' device path (``device="cuda"``), run with numpy standing in for CuPy
(``numpy_as_cuda`` in tests/conftest.py): same alignment as the CPU path, and the truth."""

import numpy as np
import pytest

from classavg.averaging import BFRAverager2D, BFSRAverager2D

from .conftest import angle_diff_deg


@pytest.mark.parametrize("cls, data", [(BFRAverager2D, "blob_class_unshifted"),
                                       (BFSRAverager2D, "blob_class")])
def test_device_path_matches_cpu_and_truth(numpy_as_cuda, request, cls, data):
    bc = request.getfixturevalue(data)
    src = bc.source(np.float32)
    ref = cls(src, batch_size=1)
    dev = cls(src, batch_size=1, device="cuda")
    assert "device='cuda'" in repr(dev) and "device" not in repr(ref)
    avg = ref.average(bc.class_indices, bc.class_refl)
    avg_dev = dev.average(bc.class_indices, bc.class_refl)
    a, d = ref.alignment, dev.alignment
    # The device expands with the basis' (unfolded) dense product in float32: the same pixel
    # sums in another order, so the refined angles agree to ~1e-4 rad.
    assert np.max(angle_diff_deg(d.rotations, a.rotations)) < 0.02
    np.testing.assert_allclose(d.shifts, a.shifts, atol=2e-3)
    np.testing.assert_allclose(avg_dev, avg, atol=1e-4 * np.abs(avg).max())
    # ... and both recover the true alignment (rotations to 0.1 degree, shifts to 0.02 px).
    assert np.median(angle_diff_deg(d.rotations[0], bc.rotations)) < 0.1
    np.testing.assert_allclose(d.shifts[0], bc.shifts, atol=0.02)


def test_device_with_dask_client_is_refused(blob_class):
    avg = BFSRAverager2D(blob_class.source(), device="cpu")
    avg.device = "cuda"                              # as if CuPy were installed
    with pytest.raises(ValueError, match="device must be 'cpu' with a Dask client"):
        avg.align(blob_class.class_indices, blob_class.class_refl, client=object())


def test_unknown_device_is_refused(blob_class):
    with pytest.raises(ValueError, match="device must be one of"):
        BFRAverager2D(blob_class.source(), device="tpu")
