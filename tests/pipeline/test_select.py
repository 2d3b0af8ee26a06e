"""classavg select: the particles and averages of chosen classes (issue 17, point 3)."""

import hashlib
import json
import shutil
import subprocess

import mrcfile
import numpy as np
import pytest
import starfile

from classavg._errors import ParameterError
from classavg.io import DataFileNotFoundError, OutputError, RelionSource
from classavg.pipeline import run_classavg
from classavg.pipeline.select import RUN_FILES, parse_class_list, select_classes


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, small_dataset):
    project = tmp_path_factory.getbasetemp()
    out = tmp_path_factory.mktemp("select-run") / "out"
    src = RelionSource(small_dataset).normalize_background().phase_flip()
    run_classavg(src, out, n_nbor=10, n_classes=12, report=False, project_dir=project)
    return out


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


def _run_tables(run_dir):
    table = dict(np.load(run_dir / "class_table.npz"))
    parts = starfile.read(run_dir / "particles.star", always_dict=True)["particles"]
    classes = starfile.read(run_dir / "classes.star", always_dict=True)["classes"]
    return table, parts, classes


@pytest.mark.parametrize("text, expected", [
    ("1-3,5", [1, 2, 3, 5]), ("7", [7]), (" 2, 2 ,1 ", [1, 2]), ("1 3\n5-6 # comment", [1, 3, 5, 6]),
    ("", []), ("4-4", [4]),
])
def test_parse_class_list(text, expected):
    assert parse_class_list(text) == expected


@pytest.mark.parametrize("text", ["0", "3-1", "a", "1-", "1,,x", "-2", "1.5"])
def test_parse_class_list_refuses(text):
    with pytest.raises(ParameterError, match="expected a list like"):
        parse_class_list(text)


def test_members_behind_the_chosen_averages(run_dir, tmp_path):
    table, parts, classes = _run_tables(run_dir)
    K = len(classes)
    before = _digest(run_dir)
    sel = select_classes(run_dir, tmp_path / "selected.star", classes="1-3,5")
    assert sel.classes == (1, 2, 3, 5) and sel.relion_classes == (1, 2, 3, 5, K + 1, K + 2,
                                                                   K + 3, K + 5)
    out = starfile.read(tmp_path / "selected.star", always_dict=True)
    assert set(out) == {"optics", "particles"}
    rows = out["particles"]
    members = table["class_indices"][table["selection_indices"][[0, 1, 2, 4]]]
    expected = parts["rlnImageName"].to_numpy()[np.unique(members)]
    # exactly the members behind the four averages, each once, in particles.star order
    assert list(rows["rlnImageName"]) == list(expected) and sel.n_particles == len(expected)
    assert set(rows["rlnClassNumber"]) <= set(sel.relion_classes)
    # a member whose partition class is chosen keeps its particles.star row
    same = parts.set_index("rlnImageName").loc[rows["rlnImageName"]]
    kept = np.isin(same["rlnClassNumber"].to_numpy(), sel.relion_classes)
    assert kept.any()
    for col in ("rlnClassNumber", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"):
        np.testing.assert_allclose(rows[col].to_numpy()[kept], same[col].to_numpy()[kept])
    assert _digest(run_dir) == before               # the run folder is never modified


def test_assigned_only_writes_the_partition(run_dir, tmp_path):
    _, parts, classes = _run_tables(run_dir)
    K = len(classes)
    sel = select_classes(run_dir, tmp_path / "a.star", classes=[2, 4], assigned_only=True)
    rows = starfile.read(tmp_path / "a.star", always_dict=True)["particles"]
    mask = np.isin(parts["rlnClassNumber"], [2, 4, K + 2, K + 4])
    assert sel.n_particles == mask.sum() == len(rows)
    assert rows.equals(parts[mask].reset_index(drop=True))
    counts = classes.set_index("classavgRank").loc[[2, 4]]
    assert mask.sum() == (counts["classavgAssigned"] + counts["classavgAssignedMirrored"]).sum()


def test_the_chosen_averages_and_their_mirrors(run_dir, tmp_path):
    _, _, classes = _run_tables(run_dir)
    K = len(classes)
    select_classes(run_dir, tmp_path / "s.star", classes="3,1")
    star = starfile.read(tmp_path / "s_averages.star", always_dict=True)
    assert list(star["particles"]["rlnClassNumber"]) == [1, 3, K + 1, K + 3]
    assert star["optics"]["rlnVoltage"].notna().all()
    stack = mrcfile.read(tmp_path / "s_averages.mrcs")
    run = mrcfile.read(run_dir / "class_averages.mrcs")
    mirrored = mrcfile.read(run_dir / "class_averages_mirrored.mrcs")
    np.testing.assert_array_equal(stack, np.concatenate([run[[0, 2]], mirrored[[0, 2]]]))


def test_filters_and_class_files(run_dir, tmp_path):
    _, _, classes = _run_tables(run_dir)
    K = len(classes)
    pop = (classes["classavgAssigned"] + classes["classavgAssignedMirrored"]).to_numpy()
    threshold = int(np.median(pop))
    sel = select_classes(run_dir, tmp_path / "m.star", min_population=threshold, exclude="1")
    assert sel.classes == tuple(int(k) for k in np.flatnonzero(pop >= threshold) + 1 if k != 1)
    (tmp_path / "keep.txt").write_text("# from the report\n2,4-5\n")
    sel = select_classes(run_dir, tmp_path / "f.star", classes=[K], classes_from=tmp_path
                         / "keep.txt")
    assert sel.classes == (2, 4, 5, K)


def test_max_resolution_reads_the_resolution_column(run_dir, tmp_path):
    # The run's own column (half-set FRC): the classes at or below the limit.
    res = starfile.read(run_dir / "classes.star", always_dict=True)["classes"][
        "classavgResolutionAngst"].to_numpy()
    limit = float(np.nanmedian(res[np.isfinite(res)]))
    sel = select_classes(run_dir, tmp_path / "own.star", max_resolution=limit)
    assert sel.classes == tuple(int(k) for k in np.flatnonzero(
        np.isfinite(res) & (res <= limit)) + 1)
    # A run folder without the column (an older run) is refused with the column named.
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    classes = starfile.read(copy / "classes.star", always_dict=True)["classes"]
    starfile.write({"classes": classes.drop(columns="classavgResolutionAngst")},
                   copy / "classes.star", overwrite=True)
    with pytest.raises(ParameterError, match="_classavgResolutionAngst"):
        select_classes(copy, tmp_path / "r.star", max_resolution=20.0)
    classes["classavgResolutionAngst"] = np.linspace(10.0, 40.0, len(classes))
    starfile.write({"classes": classes}, copy / "classes.star", overwrite=True)
    sel = select_classes(copy, tmp_path / "r.star", max_resolution=20.0)
    assert sel.classes == tuple(int(k) for k in np.flatnonzero(
        classes["classavgResolutionAngst"] <= 20.0) + 1)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(classes="99"), ParameterError, "class 99 is not in run"),
    (dict(exclude="1-99"), ParameterError, "is not in run"),
    (dict(classes="1", exclude="1"), ParameterError, "no class of run"),
    (dict(classes="x"), ParameterError, "is not a class number"),
    (dict(min_population=-1), ParameterError, "min_population"),
    (dict(classes_from="missing.txt"), DataFileNotFoundError, "missing.txt"),
])
def test_refusals(run_dir, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        select_classes(run_dir, tmp_path / "x.star", **kwargs)
    assert not list(tmp_path.glob("x*"))


def test_refuses_outputs_it_must_not_write(run_dir, tmp_path):
    with pytest.raises(OutputError, match="inside the run folder"):
        select_classes(run_dir, run_dir / "selected.star")
    with pytest.raises(ParameterError, match=r"\.star file"):
        select_classes(run_dir, tmp_path / "selected.txt")
    select_classes(run_dir, tmp_path / "s.star", classes="1")
    with pytest.raises(OutputError, match="exists; pass --overwrite"):
        select_classes(run_dir, tmp_path / "s.star", classes="2")
    select_classes(run_dir, tmp_path / "s.star", classes="2", overwrite=True)
    K = len(_run_tables(run_dir)[2])
    rows = starfile.read(tmp_path / "s.star", always_dict=True)["particles"]
    assert set(rows["rlnClassNumber"]) <= {2, 2 + K}
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("name", ["particles.star", "class_averages_mirrored.mrcs", "run.json"])
def test_a_run_folder_missing_a_file_is_refused(run_dir, tmp_path, name):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / name).unlink()
    with pytest.raises(DataFileNotFoundError, match=f"has no {name}"):
        select_classes(copy, tmp_path / "s.star")
    assert name in RUN_FILES


@pytest.mark.skipif(shutil.which("relion_star_handler") is None,
                    reason="RELION not installed (scripts/install_system_tools.sh)")
def test_relion_reads_the_selection_from_the_project(run_dir, tmp_path):
    project = json.loads((run_dir / "run.json").read_text())["project_dir"]
    select_classes(run_dir, tmp_path / "sel.star", classes="1-4")
    for name in ("sel.star", "sel_averages.star"):
        res = subprocess.run(["relion_star_handler", "--i", str(tmp_path / name), "--o",
                              str(tmp_path / f"again_{name}")], cwd=project,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and "ERROR" not in res.stdout + res.stderr, res.stdout
    res = subprocess.run(["relion_stack_create", "--i", str(tmp_path / "sel_averages.star"),
                          "--o", str(tmp_path / "stack")], cwd=project, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert mrcfile.read(tmp_path / "stack.mrcs").shape[0] == 8
    # and the particle images resolve from the project directory
    src = RelionSource(tmp_path / "sel.star", data_dir=project)
    assert src.images[:2].shape[0] == 2
