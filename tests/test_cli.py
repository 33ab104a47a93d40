"""The `gqn data` commands, run as a user runs them."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gqn.cli import main


def test_list_and_unknown_dataset(capsys):
    assert main(["data", "list"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 8
    assert ["shepard_metzler_5_parts", "64x64", "15", "900", "100"] in rows
    assert ["mazes", "84x84", "300", "1080", "120"] in rows
    assert main(["data", "list", "rooms_ring_camera"]) == 0
    assert "rooms_ring_camera/train/{0001-of-2160.tfrecord ... 2160-of-2160.tfrecord} (2160 files)" in (
        capsys.readouterr().out
    )
    assert main(["data", "list", "shepard"]) == 1
    assert "unknown dataset 'shepard'; valid datasets: jaco, mazes" in capsys.readouterr().err


def test_info(dataset_dir, capsys):
    assert main(["data", "info", str(dataset_dir.parent)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["dataset", "split", "files", "scenes", "views", "frames", "bytes"]
    assert lines[1].split()[:6] == ["shepard_metzler_5_parts", "train", "3/900", "12", "15", "64x64"]
    assert lines[2].split()[:6] == ["shepard_metzler_5_parts", "test", "2/100", "8", "15", "64x64"]


def test_verify_ok(dataset_dir, capsys):
    assert main(["data", "verify", str(dataset_dir), "--workers", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("5 files, 20 scenes, ")


def test_show_writes_a_contact_sheet(reference_file, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    assert main(["data", "show", reference_file, "--scene", "0", "--out", str(out), "--scale", "1"]) == 0
    sheet = np.asarray(Image.open(out))
    assert sheet.shape[1] == 5 * 66 + 2 and sheet.shape[0] > 3 * 66  # 5 columns, 3 rows, captions
    assert main(["data", "show", reference_file, "--scene", "3", "--out", str(out)]) == 1
    assert "--scene 3: shepard_metzler_5_parts/test has scenes 0..0" in capsys.readouterr().err


def test_python_dash_m_and_bad_flag():
    run = subprocess.run(
        [sys.executable, "-m", "gqn", "data", "verify", "--wrokers", "2", "x"], capture_output=True, text=True
    )
    assert run.returncode == 2 and "unrecognized arguments: --wrokers" in run.stderr
    run = subprocess.run([sys.executable, "-m", "gqn", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("gqn ")


@pytest.mark.parametrize("verb", ["data list", "data info", "data verify", "data show", "model"])
def test_every_verb_has_an_example_in_its_help(verb, capsys):
    with pytest.raises(SystemExit):
        main([*verb.split(), "--help"])
    assert "gqn " + verb in capsys.readouterr().out


def test_model_command_prints_counts(capsys):
    assert main(["model", "--config", "tiny", "--context", "1"]) == 0
    out = capsys.readouterr().out
    assert "  L               2" in out
    from gqn.model import GQN, PRESETS, count_parameters

    total = count_parameters(GQN(PRESETS["tiny"]))["total"]
    assert f"  total           {total:>12,}" in out
    assert main(["model", "--config", "nope"]) == 1
    assert "unknown config 'nope'" in capsys.readouterr().err
