"""classavg run/info/demo: input formats (.star, .cs, .mrcs), Angstrom options, --j, --version,
defaults in --help."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest

from classavg import __version__
from classavg.classification import RIRClass2D
from classavg.cli.main import build_parser, main
from classavg.io import RelionSource
from classavg.pipeline import read_class_table

PIXEL = 256 / 32          # the simulated data set: 32 x 32 px, simulate's default 256 / L A/px
FAST = ["--no-report", "--n-nbor", "10", "--j", "1"]


@pytest.fixture
def project(tmp_path, small_dataset):
    """A copy of the simulated data set in tmp_path/proj, and its particles as a .cs file in
    a cryoSPARC job folder (blob/path relative to the project)."""
    dst = tmp_path / "proj"
    shutil.copytree(small_dataset.parent, dst)
    return dst


@pytest.fixture
def cs_file(project, cs_writer):
    src = RelionSource(project / "particles.star")
    return cs_writer(src, project / "J12" / "J12_passthrough_particles.cs", project_dir=project)


@pytest.fixture
def no_classification(monkeypatch):
    def boom(self, *a, **k):
        raise AssertionError("classification started")
    monkeypatch.setattr(RIRClass2D, "classify", boom)


def _run(argv):
    assert main(["--no-progress"] + argv) == 0


def _refused(capsys, argv, *words):
    assert main(["--no-progress"] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("command", ["run", "demo", "info", "simulate", "presets", None])
def test_help_shows_every_default(command):
    parser = build_parser()
    p = parser if command is None else _subparsers(parser)[command]
    flags = (argparse._StoreTrueAction, argparse._HelpAction, argparse._VersionAction,
             argparse._CountAction, argparse._SubParsersAction)
    missing = [a.option_strings[0] for a in p._actions
               if a.option_strings and not isinstance(a, flags) and not a.required
               and "default" not in (a.help or "")]
    assert not missing, f"{command}: options without a default in --help: {missing}"
    text = p.format_help()
    if command == "run":
        for opt in ("--angpix", "--particle-diameter", "--max-shift", "--max-shift-px",
                    "--lowpass", "--j", "--project-dir", "--n-classes"):
            assert opt in text


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"classavg {__version__}"


@pytest.mark.parametrize("name", ["particles.txt", "particles.h5", "particles"])
def test_unknown_format_refused_before_any_work(tmp_path, capsys, no_classification, name):
    path = tmp_path / name
    path.write_text("not particles")
    out = tmp_path / "out"
    err = _refused(capsys, ["run", str(path), "-o", str(out)], str(path), ".star", ".cs",
                   ".mrcs", "unknown format")
    assert "is empty" not in err          # the STAR reader never saw it
    assert not out.exists()
    _refused(capsys, ["info", str(path)], str(path), "unknown format")


@pytest.mark.parametrize("options, words", [
    (["--lowpass", "10"], ["--lowpass", "Nyquist", "16 A"]),
    (["--particle-diameter", "4"], ["--particle-diameter", "2 px"]),
    (["--max-shift", "200"], ["half the box", "16 px"]),
    (["--max-shift", "8", "--preset", "0.13.2"], ["searches no shifts", "BFRAverager2D"]),
    (["--angpix", "1.0"], ["--angpix", "pixel size 8 A"]),
    (["--j", "0"], ["--j", "positive"]),
])
def test_bad_units_refused_before_any_work(project, tmp_path, capsys, no_classification,
                                           options, words):
    out = tmp_path / "out"
    _refused(capsys, ["run", str(project / "particles.star"), "-o", str(out)] + options,
             *words)
    assert not out.exists()


def test_angstrom_options_converted_and_recorded(project, tmp_path):
    out = tmp_path / "out"
    _run(["run", str(project / "particles.star"), "-o", str(out), "--particle-diameter", "200",
          "--max-shift", "16", "--lowpass", "40"] + FAST)
    rec = json.loads((out / "run.json").read_text())
    units = rec["units"]
    assert units["pixel_size_A"] == PIXEL
    assert units["particle_diameter_A"] == 200 and units["mask_radius_px"] == 200 / 2 / PIXEL
    assert units["max_shift_A"] == 16 and units["max_shift_px"] == 2
    assert units["lowpass_A"] == 40 and units["bandlimit"] == pytest.approx(2 * PIXEL / 40)
    assert rec["parameters"]["averager_options"] == {"radius": 2}
    assert rec["parameters"]["classifier_options"]["bandlimit"] == pytest.approx(0.4)
    assert "normalize_background(radius=12.5)" in rec["preprocessing"]
    assert rec["execution"]["threads"] == 1
    assert rec["input_format"] == "RELION particle STAR file"


def test_pixel_shift_and_downsampled_pixels(project, tmp_path):
    """Lengths refer to the working images: 16 px of 16 A after --downsample 16."""
    out = tmp_path / "out"
    _run(["run", str(project / "particles.star"), "-o", str(out), "--downsample", "16",
          "--max-shift-px", "3", "--particle-diameter", "200"] + FAST)
    units = json.loads((out / "run.json").read_text())["units"]
    assert units["pixel_size_A"] == 2 * PIXEL
    assert units["max_shift_px"] == 3 and units["max_shift_A"] == 3 * 2 * PIXEL
    assert units["mask_radius_px"] == 200 / 2 / (2 * PIXEL)


def test_cs_gives_the_same_class_table_as_star(project, cs_file, tmp_path):
    """The acceptance point of issue 17: the .cs file of the same particles gives the same
    classes, alignments and scores."""
    a, b = tmp_path / "from_star", tmp_path / "from_cs"
    common = ["--phase-flip"] + FAST
    _run(["run", str(project / "particles.star"), "-o", str(a)] + common)
    _run(["run", str(cs_file), "--project-dir", str(project), "-o", str(b)] + common)
    ta, tb = read_class_table(a / "class_table.npz"), read_class_table(b / "class_table.npz")
    assert ta.keys() == tb.keys()
    for key in ta:
        if ta[key].dtype.kind == "f":
            # the .cs file holds float32 CTF values (as cryoSPARC writes them): a relative
            # change of 6e-8 in defocus moves the float32 features by a few ulps
            np.testing.assert_allclose(tb[key], ta[key], rtol=1e-4, atol=1e-5, err_msg=key)
        else:
            np.testing.assert_array_equal(tb[key], ta[key], err_msg=key)
    rec = json.loads((b / "run.json").read_text())
    assert rec["input_format"] == "cryoSPARC particle file"
    # particles.star names the stacks relative to the cryoSPARC project directory
    text = (b / "particles.star").read_text()
    assert "@Particles/particles.mrcs" in text and "_rlnVoltage" in text


def test_cs_without_project_dir_says_so(project, cs_file, tmp_path, capsys, monkeypatch,
                                        no_classification):
    monkeypatch.chdir(tmp_path)
    (project / "particles.star").unlink()
    moved = tmp_path / "elsewhere.cs"
    shutil.move(cs_file, moved)
    _refused(capsys, ["run", str(moved), "-o", str(tmp_path / "out")], "--project-dir",
             "blob/path 'Particles/particles.mrcs'")


def test_mrcs_input_with_angpix(project, tmp_path):
    out = tmp_path / "out"
    stack = project / "Particles" / "particles.mrcs"
    _run(["run", str(stack), "--angpix", "4", "-o", str(out), "--max-shift", "8"] + FAST)
    rec = json.loads((out / "run.json").read_text())
    assert rec["input"]["pixel_size"] == 4.0 and rec["units"]["max_shift_px"] == 2
    assert rec["input_format"].startswith("MRC image stack")


@pytest.mark.parametrize("kind", ["cs", "mrcs"])
def test_info_reads_every_format(project, cs_file, capsys, kind):
    if kind == "cs":
        argv = ["info", str(cs_file), "--project-dir", str(project)]
    else:
        argv = ["info", str(project / "Particles" / "particles.mrcs"), "--angpix", "8"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "particles      : 300" in out and "pixel size     : 8 A" in out
    assert ("cryoSPARC particle file" if kind == "cs" else "MRC image stack") in out
    assert ("defocus U" in out) == (kind == "cs")


def test_demo_checks_angstrom_options_before_simulating(tmp_path, capsys, no_classification):
    out = tmp_path / "demo"
    # the demo's pixel size is 4 A (cli/demo.py DEMO_PIXEL_SIZE): Nyquist is 8 A
    _refused(capsys, ["demo", "-o", str(out), "--n", "50", "--L", "32", "--lowpass", "6"],
             "--lowpass", "Nyquist", "8 A")
    assert not (out / "data").exists()
