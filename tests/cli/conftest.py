import pytest

from classavg.sources import simulate_dataset


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """300 simulated 32 x 32 particles with CTF, written as a RELION 3.1 data set."""
    folder = tmp_path_factory.mktemp("cli-sim")
    simulate_dataset(folder, n=300, L=32, snr=2.0, ctf=True, seed=1)
    return folder / "particles.star"
