"""``classavg select``: the thin CLI over classavg.pipeline.select (exit codes, one-line errors)."""

import pytest

from classavg.cli.main import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, small_dataset):
    out = tmp_path_factory.mktemp("cli-select") / "out"
    assert main(["--no-progress", "run", str(small_dataset), "-o", str(out), "--n-nbor", "10",
                 "--n-classes", "8", "--no-report", "--phase-flip", "--data-dir",
                 str(tmp_path_factory.getbasetemp())]) == 0
    return out


def test_cli_select(run_dir, tmp_path, capsys):
    assert main(["--no-progress", "select", str(run_dir), "--classes", "1-2", "-o",
                 str(tmp_path / "c.star")]) == 0
    assert "2 classes (1-2)" in capsys.readouterr().out
    assert main(["select", str(run_dir), "--classes", "1-2", "-o",
                 str(tmp_path / "c.star")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("classavg select: error:") and "\n" not in err
    assert main(["select", str(run_dir), "--classes", "0", "-o", str(tmp_path / "d.star")]) == 2




def test_cli_select_help_shows_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["select", "--help"])
    text = capsys.readouterr().out
    for option in ("--classes", "--classes-from", "--exclude", "--min-population",
                   "--max-resolution", "--assigned-only", "--overwrite"):
        assert option in text
