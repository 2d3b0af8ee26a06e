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


def test_simulate_a_shipped_molecule_with_coloured_noise_corruptions_and_junk(tmp_path, capsys):
    out = tmp_path / "sim"
    psd = tmp_path / "psd.txt"
    np.savetxt(psd, np.stack([np.linspace(0, 0.75, 8), np.linspace(3, 1, 8)], 1))
    base = ["--no-progress", "simulate", "-o", str(out), "--n", "20", "--L", "32",
            "--molecule", "emd-3488", "--pixel-size", "3.0", "--snr", "0.2", "--ctf",
            "--amplitude-spread", "0.2", "--background-offset", "0.3",
            "--background-gradient", "0.5", "--contrast", "dark", "--seed", "2",
            "--junk", "0.5", "--junk-kinds", "empty_ice=1,off_centre=1"]
    assert main(base + ["--noise", "ice", "--ice-psd", "3", "0.05"]) == 0
    assert "10 junk" in capsys.readouterr().out
    gt = load_ground_truth(out / "ground_truth.npz")
    assert gt["volume"] == "emd-3488" and gt["pixel_size"] == pytest.approx(3.0)
    assert gt["contrast"] == "dark" and gt["noise"] == "ice(amplitude=3, k0=0.05)"
    assert sorted(set(gt["kind"])) == ["empty_ice", "off_centre", "particle"]
    assert main(base + ["--noise", str(psd), "--overwrite"]) == 0
    sim = Simulation(32, 20, volume="emd-3488", pixel_size=3.0, snr=0.2, ctf=True,
                     amplitude_spread=0.2, background_offset=0.3, background_gradient=0.5,
                     contrast="dark", seed=2, junk=0.5,
                     junk_kinds={"empty_ice": 1, "off_centre": 1}, noise=psd)
    from classavg.io.relion import RelionSource
    np.testing.assert_allclose(RelionSource(out / "particles.star").images[:], sim.images[:],
                               atol=1e-5 * np.abs(sim.images[:]).max())


@pytest.mark.parametrize("extra, match", [
    (["--molecule", "emd-0"], "molecule must be one of"),
    (["--junk", "2"], "junk must be a fraction"),
    (["--junk", "0.2", "--junk-kinds", "dust=1"], "unknown kind"),
    (["--junk", "0.2", "--junk-kinds", "empty_ice=x"], "KIND=WEIGHT"),
    (["--noise", "nofile.txt"], "does not exist"),
    (["--ice-psd", "2", "0.1"], "needs --noise ice")])
def test_simulate_refuses_bad_realism_options(tmp_path, capsys, extra, match):
    out = tmp_path / "x"
    assert main(["simulate", "-o", str(out), "--n", "4", "--L", "16"] + extra) == 2
    assert match in capsys.readouterr().err
    assert not (out / "particles.star").exists()
