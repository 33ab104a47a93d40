"""The `gqn data` commands, run as a user runs them."""

import argparse
import importlib.metadata
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gqn.cli import build_parser, main


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
    """A whole set (files 1-of-3 .. 3-of-3, as gqn data synth writes them) shows its count; a
    partial copy shows how many of the set its names announce."""
    assert main(["data", "info", str(dataset_dir.parent)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["dataset", "split", "files", "scenes", "views", "frames", "bytes"]
    assert lines[1].split()[:6] == ["shepard_metzler_5_parts", "train", "3", "12", "15", "64x64"]
    assert lines[2].split()[:6] == ["shepard_metzler_5_parts", "test", "2", "8", "15", "64x64"]
    (dataset_dir / "train" / "2-of-3.tfrecord").unlink()
    assert main(["data", "info", str(dataset_dir)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:4] == [
        "shepard_metzler_5_parts",
        "train",
        "2/3",
        "8",
    ]


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


def verbs(parser=None, name="gqn"):
    """(command, parser) of every verb of the gqn command, `data` verbs included."""
    parser = parser or build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(name, parser)]
    return [v for verb, p in subs[0].choices.items() for v in verbs(p, f"{name} {verb}")]


def test_every_option_has_help_and_states_its_default_once():
    seen = []
    for command, parser in verbs():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{command} {action.dest}: no help"
            said = formatter._expand_help(action)  # the line --help shows, defaults filled in
            seen.append(command)
            assert said.count("default") <= 1 and "(default: None)" not in said, f"{command}: {said}"
    assert "gqn eval" in seen and "gqn data download" in seen and "gqn train" in seen


def test_each_verbs_help_shows_its_own_examples():
    """An example line of a verb's help (`  gqn ...`) runs that verb, not another one."""
    for command, parser in verbs():
        examples = re.findall(r"^\s+(gqn [a-z]+(?: [a-z]+)?)", parser.format_help(), re.M)
        assert examples, command
        assert all(command.startswith(e) or e.startswith(command) for e in examples), (command, examples)


def test_a_missing_checkpoint_is_named_as_the_user_gave_it(dataset_dir, tmp_path, capsys):
    for argv in (["eval", "/nonexistent"], ["render", "/nonexistent", "--out", str(tmp_path / "g.png")]):
        assert main(argv) == 1
        assert capsys.readouterr().err == "gqn: error: /nonexistent: no such file or folder\n"
    assert main(["export", "/nonexistent", "--name", "x", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "gqn: error: /nonexistent: no such file or folder\n"
    assert main(["export", "pretrained:rooms_ring_camera", "--name", "x", "--out", str(tmp_path)]) == 1
    assert "already exported weights; gqn export takes a training checkpoint" in capsys.readouterr().err
    train = [
        "train",
        "--data",
        str(dataset_dir),
        "--config",
        "tiny",
        "--workers",
        "0",
        "--batch-size",
        "2",
        "--run-dir",
        str(tmp_path),
    ]
    assert main([*train, "--init", "/nonexistent"]) == 1
    assert capsys.readouterr().err == "gqn: error: --init /nonexistent: no such file or folder\n"


def test_the_license_is_an_spdx_expression():
    """What pip reads: a `License-Expression`, not the deprecated TOML table."""
    assert importlib.metadata.metadata("gqn")["License-Expression"] == "Apache-2.0"


@pytest.mark.parametrize("verb", ["data list", "data info", "data verify", "data show", "model"])
def test_every_verb_has_an_example_in_its_help(verb, capsys):
    with pytest.raises(SystemExit):
        main([*verb.split(), "--help"])
    assert "gqn " + verb in capsys.readouterr().out


def test_model_command_prints_counts(capsys):
    """The tiny preset's parameters, counted by hand (r = h = u = 16, z = 4, 3x3 kernels, one core
    of each kind; weights + biases):
      tower        3->16 2x2: 208, 16->16 2x2: 1,040, 16->8 3x3: 1,160, 8->16 2x2: 528,
                   23->16 3x3: 3,328, 23->8 3x3: 1,664, 8->16 3x3: 1,168, 16->16 1x1: 272  = 9,368
      generation   gates of [v, r] 23->64 3x3: 13,312, of [z, h] 20->64 3x3 (no bias): 11,520,
                   canvas 16->16 4x4 transposed: 4,112, prior 16->8 3x3: 1,160       = 30,104
      inference    canvas 16->16 4x4: 4,112, gates of [x blocks, v, r] 71->64 3x3: 40,960,
                   of [h_g, u, h_e] 48->64 3x3 (no bias): 27,648, posterior 16->8 3x3: 1,160 = 73,880
      observation  16->3 1x1: 51
    """
    assert main(["model", "--config", "tiny", "--context", "1"]) == 0
    out = capsys.readouterr().out
    assert "  L               2" in out
    for name, n in [("representation", 9368), ("generation", 30104), ("inference", 73880)]:
        assert f"  {name:<15} {n:>12,}" in out
    assert "  observation               51" in out and "  total                113,403" in out
    assert main(["model", "--config", "nope"]) == 1
    assert "unknown config 'nope'" in capsys.readouterr().err


def test_model_command_counts_the_epipolar_preset_with_a_datasets_cameras(capsys):
    assert main(["model", "--config", "epipolar"]) == 0
    out = capsys.readouterr().out
    assert (
        "  fov             100.0" in out
        and "  depth_samples   16" in out
        and "  total                450,273" in out
    )
    assert main(["model", "--config", "epipolar", "--dataset", "rooms_ring_camera"]) == 0
    assert "  fov             60.0" in capsys.readouterr().out
    assert main(["model", "--config", "epipolar", "--dataset", "nope"]) == 1
    assert capsys.readouterr().err.startswith("gqn: error: unknown dataset 'nope'; valid datasets: jaco, ")


def test_the_seeds_own_command_line_parses_as_written():
    """`--data_parallel=True --batch_size=144 --workers=2 --resume=343000`: hidden aliases, and a
    bool flag that takes =True/=False; the help shows one spelling, with dashes."""
    from gqn.config import train_config_from_args

    parser = build_parser()
    args = parser.parse_args(
        ["train", "--data_parallel=True", "--batch_size=144", "--workers=2", "--resume=343000"]
    )
    cfg = train_config_from_args(args)
    assert (cfg.data_parallel, cfg.batch_size, cfg.workers, cfg.resume) == (True, 144, 2, "343000")
    assert train_config_from_args(parser.parse_args(["train", "--data-parallel"])).data_parallel is True
    assert train_config_from_args(parser.parse_args(["train", "--compile=false"])).compile is False
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--compile=maybe"])
    train = parser._subparsers._group_actions[0].choices["train"]
    text = train.format_help()
    assert "--batch-size BATCH_SIZE" in text and "--batch_size" not in text and "--data_parallel" not in text
    assert "(default: 36)" in text and "(default: None)" not in text  # each default stated once
