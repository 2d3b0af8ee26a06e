import pytest

from classavg.io import RelionSource
from classavg.sources import simulate_dataset


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """300 simulated 32 x 32 particles with CTF, written as a RELION 3.1 data set."""
    folder = tmp_path_factory.mktemp("sim")
    simulate_dataset(folder, n=300, L=32, snr=2.0, ctf=True, seed=1)
    return folder / "particles.star"


@pytest.fixture
def small_source(small_dataset):
    return RelionSource(small_dataset).normalize_background().phase_flip()
