"""Junk rejection in a run (issue 16): scores, decision, ranking and the particle files."""

import json
import shutil
import subprocess

import mrcfile
import numpy as np
import pytest
import starfile

from classavg.cli.main import main
from classavg.io import RelionSource
from classavg.pipeline import read_class_table, run_classavg
from classavg.pipeline._junk import scoring_assignment
from classavg.pipeline.presets import latest_preset
from classavg.sources import simulate_dataset

needs_relion = pytest.mark.skipif(shutil.which("relion_star_handler") is None,
                                  reason="RELION not installed "
                                  "(scripts/install_system_tools.sh)")


@pytest.fixture(scope="module")
def junk_run(tmp_path_factory):
    """400 blob particles at SNR 2 with CTF, 30 % of them empty ice, through the default run
    from the project directory; the ground truth kinds."""
    project = tmp_path_factory.mktemp("junkproj")
    sim = simulate_dataset(project / "data", n=400, L=32, snr=2.0, ctf=True, junk=0.3,
                           junk_kinds={"empty_ice": 1}, seed=3)
    src = RelionSource(project / "data" / "particles.star", data_dir=project)
    src = src.normalize_background()
    cas, paths = run_classavg(src, project / "Class2D", n_nbor=10, report=True,
                              project_dir=project)
    return project, sim.kinds, cas, paths


def test_scoring_assignment_avoids_the_reference():
    members = np.array([[0, 1, 2], [1, 0, 3], [2, 3, 1]])
    dist = np.array([[0, 1.0, 2.0], [0, 0.5, 1.0], [0, 3.0, 0.2]])
    row, col = scoring_assignment(members, dist, 4)
    # 0: only listed by class 1 besides its own; 1: nearest in class 2 (0.2 < 1.0);
    # 2: in class 0; 3: class 1 (1.0 < 3.0)
    np.testing.assert_array_equal(row, [1, 2, 0, 1])
    np.testing.assert_array_equal(col, [1, 2, 2, 2])
    own_only = scoring_assignment(np.array([[0, 1], [2, 1]]), np.array([[0, 1.0], [0, 2.0]]),
                                  3)
    np.testing.assert_array_equal(own_only[0], [0, 0, 1])   # 0 and 2: their own classes


def test_empty_ice_is_rejected_and_particles_kept(junk_run):
    _, kinds, cas, paths = junk_run
    table = read_class_table(paths["class_table.npz"])
    kept = table["particle_kept"]
    junk = kinds != "particle"
    assert (~kept[junk]).mean() >= 0.9
    assert kept[~junk].mean() >= 0.95
    rec = json.loads(paths["run.json"].read_text())
    assert rec["preset"] == latest_preset().name
    assert rec["junk_rejection"]["n_kept_particles"] == int(kept.sum())
    assert np.isfinite(rec["junk_rejection"]["thresholds"]["min_fit"])


def test_rejected_classes_are_ranked_last(junk_run):
    _, kinds, cas, paths = junk_run
    classes = starfile.read(paths["classes.star"])
    flags = classes["classavgKept"].to_numpy()
    assert flags.sum() >= 1 and np.all(np.diff(flags) <= 0)      # 1 ... 1 0 ... 0
    table = read_class_table(paths["class_table.npz"])
    np.testing.assert_array_equal(table["selection_indices"],
                                  classes["classavgClassId"].to_numpy())
    np.testing.assert_array_equal(table["class_kept"], flags.astype(bool))
    # the stack follows the ranking: average k is the class of row k (recomputed here in a
    # different batch, so only as close as the batch-wise Wiener estimate allows)
    stack = mrcfile.read(paths["class_averages.mrcs"]).reshape(cas.n, -1).astype(float)
    again = cas.images[:].reshape(cas.n, -1).astype(float)
    stack /= np.linalg.norm(stack, axis=1, keepdims=True)
    again /= np.linalg.norm(again, axis=1, keepdims=True)
    corr = again @ stack.T
    k = int(flags.sum())                  # the kept ones (rejected: noise-like averages)
    np.testing.assert_array_equal(corr[:k].argmax(axis=1), np.arange(k))
    assert np.diag(corr)[:k].min() > 0.98
    report = paths["report.html"].read_text(encoding="utf-8")
    assert report.count('data-kept="0"') == int((flags == 0).sum())
    assert report.count("particles kept") >= int((classes["classavgAssigned"] > 0).sum())


def test_selected_and_rejected_partition_the_particles(junk_run):
    project, kinds, cas, paths = junk_run
    read = {k: starfile.read(paths[k], always_dict=True) for k in
            ("particles.star", "selected_particles.star", "rejected_particles.star")}
    allp = read["particles.star"]["particles"]
    sel = read["selected_particles.star"]["particles"]
    rej = read["rejected_particles.star"]["particles"]
    assert len(sel) + len(rej) == len(allp) == 400
    assert set(sel["rlnImageName"]).isdisjoint(rej["rlnImageName"])
    assert (sel["classavgKept"] == 1).all() and (rej["classavgKept"] == 0).all()
    for name in ("selected_particles.star", "rejected_particles.star"):
        assert read[name]["optics"].equals(read["particles.star"]["optics"])
    again = RelionSource(paths["selected_particles.star"], data_dir=project)
    assert again.n == len(sel) and again.images[:2].shape == (2, 32, 32)


@needs_relion
def test_relion_reads_the_particle_files(junk_run, tmp_path):
    project, *_ = junk_run
    for name in ("selected_particles.star", "rejected_particles.star", "particles.star"):
        res = subprocess.run(["relion_star_handler", "--i", f"Class2D/{name}", "--o",
                              str(tmp_path / name)], cwd=project, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0 and "ERROR" not in res.stdout + res.stderr
        back = starfile.read(tmp_path / name, always_dict=True)["particles"]
        orig = starfile.read(project / "Class2D" / name, always_dict=True)["particles"]
        assert len(back) == len(orig)
        # RELION keeps classavg's labels it does not know
        np.testing.assert_allclose(back["classavgFitScore"], orig["classavgFitScore"],
                                   rtol=1e-5)


def _cli_run(project, out, *options):
    """``classavg run`` on the fixture's data set into ``out``; the exit code."""
    return main(["--no-progress", "run", str(project / "data" / "particles.star"),
                 "--data-dir", str(project), "-o", str(out), *options])


def test_cli_without_junk_rejection(tmp_path, junk_run):
    project, *_ = junk_run
    out = tmp_path / "o"
    assert _cli_run(project, out, "--n-nbor", "10", "--n-classes", "20",
                    "--no-junk-rejection", "--no-report") == 0
    assert not (out / "selected_particles.star").exists()
    assert "classavgKept" not in starfile.read(out / "classes.star").columns
    assert json.loads((out / "run.json").read_text())["parameters"]["junk_rejection"] is None


def test_given_thresholds_are_used(tmp_path, junk_run):
    project, *_ = junk_run
    out = tmp_path / "o"
    assert _cli_run(project, out, "--n-nbor", "10", "--min-fit-score=-1e9",
                    "--max-extra-density", "1e9", "--max-missing-density", "1e9",
                    "--no-report") == 0
    rec = json.loads((out / "run.json").read_text())["junk_rejection"]
    assert rec["thresholds"]["min_fit"] == -1e9 and rec["n_rejected_particles"] == 0
    assert rec["thresholds"]["max_missing"] == 1e9
    parts = starfile.read(out / "particles.star", always_dict=True)["particles"]
    assert {"classavgMissingDensity", "classavgMissingFraction"} <= set(parts.columns)


def test_class_models_undo_the_alignment():
    """The fast models equal the reference pixel path: mirror(shift(rotate(A, -t), -s))."""
    from classavg.averaging._transform import mirror_images, rotate_images, shift_images
    from classavg.basis import DenseFBTransform, FourierBesselBasis2D
    from classavg.pipeline._junk import class_models

    rng = np.random.default_rng(0)
    L, k = 32, 6
    basis = FourierBesselBasis2D(L, dtype=np.float64)
    averages = basis.evaluate(basis.expand(rng.standard_normal((3, L, L))))
    rows = np.array([0, 1, 2, 0, 1, 2])
    rot = rng.uniform(0, 2 * np.pi, k)
    sh = rng.uniform(-2, 2, (k, 2))
    mir = np.array([0, 1, 0, 1, 0, 1], bool)
    fast = class_models(averages, rows, rot, sh, mir, basis, DenseFBTransform(basis))
    ref = shift_images(rotate_images(averages[rows], -rot, basis=basis), -sh)
    ref[mir] = mirror_images(ref[mir])
    # the same band-limited images; the two expansions (dense sums, NUFFT) differ by ~1e-6
    scale = np.abs(ref).max()
    np.testing.assert_allclose(fast, ref, atol=1e-4 * scale)


def test_select_kept_only(junk_run, tmp_path):
    from classavg.pipeline.select import select_classes

    project, kinds, cas, paths = junk_run
    run = paths["run.json"].parent
    sel = select_classes(run, tmp_path / "kept.star", kept_only=True, assigned_only=True)
    classes = starfile.read(paths["classes.star"])
    assert list(sel.classes) == list(np.flatnonzero(classes["classavgKept"] == 1) + 1)
    parts = starfile.read(sel.particles, always_dict=True)["particles"]
    assert (parts["classavgKept"] == 1).all()
    selected = starfile.read(paths["selected_particles.star"], always_dict=True)["particles"]
    # kept particles all sit in kept classes: the same set as selected_particles.star
    assert set(parts["rlnImageName"]) == set(selected["rlnImageName"])


@pytest.mark.parametrize("argv, message", [
    (["--max-extra-density", "nan"], "--max-extra-density must be a finite number"),
    (["--min-fit-score", "3", "--no-junk-rejection"], "cannot go with --no-junk-rejection"),
])
def test_cli_junk_options_are_checked_first(tmp_path, junk_run, capsys, argv, message):
    project, *_ = junk_run
    out = tmp_path / "o"
    assert _cli_run(project, out, *argv) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_preset_1_4_has_no_missing_density_test(tmp_path, junk_run):
    """1.4.0 decides as it did when it was the newest (no missing-density test); 1.5.0
    adds the test with a threshold from the data."""
    project, *_ = junk_run
    src = RelionSource(project / "data" / "particles.star", data_dir=project)
    _, paths = run_classavg(src.normalize_background(), tmp_path / "o", preset="1.4.0",
                            n_nbor=10, report=False, project_dir=project)
    rec = json.loads(paths["run.json"].read_text())["junk_rejection"]
    assert rec["options"]["max_missing"] is None and rec["thresholds"]["max_missing"] is None
    _, _, _, newest = junk_run
    rec = json.loads(newest["run.json"].read_text())["junk_rejection"]
    assert rec["thresholds"]["max_missing_rule"] == "median + 3 robust SD"
    assert np.isfinite(rec["thresholds"]["max_missing"])


def test_presets_before_1_4_keep_everything(tmp_path, junk_run):
    """Versioned presets stay reproducible: 1.3.0 rejects nothing and writes no split."""
    project, *_ = junk_run
    src = RelionSource(project / "data" / "particles.star", data_dir=project)
    _, paths = run_classavg(src.normalize_background(), tmp_path / "o", preset="1.3.0",
                            n_nbor=10, n_classes=10, report=False, project_dir=project)
    assert "selected_particles.star" not in paths
    assert json.loads(paths["run.json"].read_text())["parameters"]["junk_rejection"] is None
