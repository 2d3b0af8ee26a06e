"""Tests of ``classavg simulate``."""

import numpy as np
import pytest

from classavg.cli.main import main
from classavg.sources.simulation import Simulation, load_ground_truth

pytest.importorskip("classavg.io.relion")   # Simulation.save writes through it


def test_simulate_writes_star_stack_and_ground_truth(tmp_path, capsys):
    out = tmp_path / "sim"
    argv = ["--no-progress", "simulate", "-o", str(out), "--n", "12", "--L", "24",
            "--snr", "0.5", "--ctf", "--defocus-groups", "3", "--max-shift", "2",
            "--pixel-size", "3.5", "--seed", "4"]
    assert main(argv) == 0
    assert "wrote 12 images" in capsys.readouterr().out
    assert (out / "particles.star").is_file()
    assert (out / "Particles" / "particles.mrcs").is_file()
    gt = load_ground_truth(out / "ground_truth.npz")
    sim = Simulation(24, 12, snr=0.5, ctf=True, n_defocus_groups=3, max_shift=2.0,
                     pixel_size=3.5, seed=4)
    np.testing.assert_array_equal(gt["rotations"], sim.rotations)
    np.testing.assert_array_equal(gt["offsets"], sim.offsets)
    assert gt["snr"] == 0.5 and gt["seed"] == 4 and gt["pixel_size"] == 3.5

    from classavg.io.relion import RelionSource
    back = RelionSource(out / "particles.star")
    assert back.n == 12 and back.L == 24 and back.pixel_size == pytest.approx(3.5)
    np.testing.assert_allclose(back.images[:], sim.images[:], atol=1e-6)
    np.testing.assert_allclose(back.ctf_params()["defocus_u"], gt["defocus_u"])

    # A second run refuses to overwrite (one-line error, exit code 2) unless asked to.
    assert main(argv) == 2
    assert "exists" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0


def test_simulate_from_an_mrc_map(tmp_path):
    import mrcfile

    from classavg.sources.volume import default_volume
    path = tmp_path / "map.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(default_volume().to_array(32).astype(np.float32))
        mrc.voxel_size = 2.0
    out = tmp_path / "sim"
    assert main(["--no-progress", "simulate", "-o", str(out), "--n", "4", "--L", "16",
                 "--volume", str(path)]) == 0
    gt = load_ground_truth(out / "ground_truth.npz")
    assert gt["pixel_size"] == pytest.approx(4.0) and gt["volume"] == str(path)


def test_simulate_reports_bad_arguments(tmp_path, capsys):
    assert main(["simulate", "-o", str(tmp_path / "x"), "--n", "4", "--L", "16",
                 "--snr", "-1"]) == 2
    assert "snr" in capsys.readouterr().err
    assert main(["simulate", "-o", str(tmp_path / "y"), "--n", "4", "--L", "16",
                 "--volume", str(tmp_path / "missing.mrc")]) == 2
    assert "missing.mrc" in capsys.readouterr().err
