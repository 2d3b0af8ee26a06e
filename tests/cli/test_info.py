"""``classavg info``: the subcommand module formats ``dataset_summary``."""

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from classavg.cli import info
from classavg.io import DataFileNotFoundError, save_source
from classavg.sources import ArrayImageSource


@pytest.fixture
def dataset(tmp_path):
    """20 particles of 16 x 16 in two optics groups, written as RELION 3.1 under project/."""
    n = 20
    rng = np.random.default_rng(0)
    md = pd.DataFrame({
        "rlnOpticsGroupName": np.where(np.arange(n) < 12, "g300", "g200"),
        "rlnVoltage": np.where(np.arange(n) < 12, 300.0, 200.0),
        "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.1,
        "rlnDefocusU": np.linspace(10000, 29000, n), "rlnDefocusV": np.linspace(9000, 28000, n),
        "rlnDefocusAngle": np.linspace(-80, 70, n),
        "rlnOriginXAngst": np.linspace(-6, 6, n), "rlnOriginYAngst": 0.0})
    src = ArrayImageSource(rng.normal(size=(n, 16, 16)), pixel_size=1.25, metadata=md)
    project = tmp_path / "project"
    save_source(src, project / "Select" / "job003" / "particles.star",
                stack_name="../../Particles/p.mrcs")
    return project


def _args(argv):
    parser = argparse.ArgumentParser(prog="classavg")
    sub = parser.add_subparsers(dest="command")
    p = info.add_parser(sub)
    assert isinstance(p, argparse.ArgumentParser)
    return parser.parse_args(["info"] + argv)


def test_info_text(dataset, capsys):
    assert info.run(_args([str(dataset / "Select/job003/particles.star"),
                           "--data-dir", str(dataset)])) == 0
    out = capsys.readouterr().out
    assert "particles      : 20" in out
    assert "box size       : 16 px" in out and "pixel size     : 1.25 A" in out
    assert "RELION layout  : 3.1" in out and "stacks         : 1" in out
    assert "optics groups  : 2" in out
    assert any(line.split()[:3] == ["1", "g300", "300"] and line.split()[-1] == "12"
               for line in out.splitlines())
    assert any(line.split()[:3] == ["2", "g200", "200"] and line.split()[-1] == "8"
               for line in out.splitlines())
    assert "min 10000.0  median 19500.0  max 29000.0 A" in out
    assert "-80.0 .. 70.0 deg" in out
    assert "origin X       : -6.00 .. 6.00 A" in out


def test_info_json(dataset, capsys):
    star = dataset / "Select/job003/particles.star"
    assert info.run(_args([str(star), "--json"])) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["n_particles"] == 20 and s["box_size"] == 16 and s["relion_version"] == "3.1"
    assert [g["count"] for g in s["optics_groups"]] == [12, 8]
    assert s["ctf"]["defocus_v"]["max"] == pytest.approx(28000.0)


def test_info_missing_file(tmp_path):
    with pytest.raises(DataFileNotFoundError, match="missing.star"):
        info.run(_args([str(tmp_path / "missing.star")]))


def test_info_through_main(dataset, tmp_path, capsys, monkeypatch):
    from classavg.cli import main as main_module
    # only this subcommand: the others may be written by now or not
    monkeypatch.setattr(main_module, "SUBCOMMANDS", ("info",))
    assert main_module.main(["info", str(dataset / "Select/job003/particles.star")]) == 0
    assert "particles      : 20" in capsys.readouterr().out
    assert main_module.main(["info", str(tmp_path / "missing.star")]) == 2
    err = capsys.readouterr().err
    assert "classavg info: error:" in err and "missing.star" in err
