"""The main job (`make demo` runs `gqn demo`), end to end in a reduced form, through the same code."""

import json
import os

from conftest import make_dataset
from PIL import Image

import gqn.demo
from gqn.checkpoint import load_checkpoint, read_description
from gqn.cli import build_parser, main
from gqn.config import train_config_from_args
from gqn.demo import RECIPE, verdict
from gqn.errors import GQNError


def test_demo_writes_every_result_and_reuses_them(tmp_path, capsys):
    data = make_dataset(tmp_path, files=(1, 1), scenes_per_file=6)
    out = tmp_path / "out"
    argv = ["demo", "--out", str(out), "--data", str(data), "--steps", "3", "--config", "tiny"]
    argv += ["--batch-size", "4", "--eval-scenes", "4", "--workers", "0"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    names = ["curves.png", "eval.txt", "eval.json", "grid.png", "orbit.gif"]
    names += ["pretrained-grid.png", "pretrained-orbit.gif"]  # data named shepard_metzler_5_parts
    for name in names:
        assert (out / name).stat().st_size > 0, name
        assert f"{out / name}" in printed
    report = json.loads((out / "eval.json").read_text())
    assert report["step"] == 3 and set(report["results"]) == {"1", "3", "5"}
    assert Image.open(out / "orbit.gif").n_frames == 48
    assert (out / "eval.txt").read_text() in printed
    assert "trained 3 steps in " in printed and "step 3 in all" in printed  # what it managed
    assert verdict(report) in printed  # and what that means for the pictures
    trained = load_checkpoint(out / "run" / "checkpoints" / "last.pt")["train_config"]
    assert {field: trained[field] for field in RECIPE} == {**RECIPE, "config": "tiny", "batch_size": 4}

    # A re-run trains no further and rewrites nothing.
    stamps = {name: os.stat(out / name).st_mtime_ns for name in names}
    assert main(argv) == 0
    assert "training tiny" not in capsys.readouterr().out
    assert stamps == {name: os.stat(out / name).st_mtime_ns for name in names}

    # Asking for more steps continues from the checkpoint and refreshes the results.
    assert main([*argv[:6], "5", *argv[7:]]) == 0
    assert "step 3 of 5" in capsys.readouterr().out
    assert json.loads((out / "eval.json").read_text())["step"] == 5


def test_demo_bad_scene_is_a_one_line_error(tmp_path, capsys):
    data = make_dataset(tmp_path, files=(1, 1), scenes_per_file=4)
    argv = ["demo", "--out", str(tmp_path / "o"), "--data", str(data), "--steps", "1", "--config", "tiny"]
    assert main([*argv, "--batch-size", "2", "--eval-scenes", "2", "--workers", "0", "--scene", "9"]) == 1
    assert "--scene 9: shepard_metzler_5_parts/test has scenes 0..3" in capsys.readouterr().err


def test_gqn_demo_trains_the_shipped_recipe_at_the_measured_batch_and_learning_rate(tmp_path, monkeypatch):
    """Without recipe flags `gqn demo` trains RECIPE, which is the first stage of the shipped
    weights' training (batch 8 at lr 1e-3, what benchmarks/learning.py measured best for ten
    minutes, README "Recipe choices"; warm-up, sigma schedule, precision, seed; its command as
    their JSON records it, read by gqn train's own parser) with the `demo` model in place of the
    `views` model that stage trained (the same with a cheaper step; README)."""
    started = []

    def train(cfg):
        started.append(cfg)
        raise GQNError("stopped before the first step")

    monkeypatch.setattr(gqn.demo, "train", train)
    data = make_dataset(tmp_path, files=(1, 1), scenes_per_file=4)
    argv = [
        "demo",
        "--out",
        str(tmp_path / "out"),
        "--data",
        str(data),
        "--eval-scenes",
        "4",
        "--workers",
        "0",
    ]
    assert main(argv) == 1
    (cfg,) = started
    assert {field: getattr(cfg, field) for field in RECIPE} == RECIPE
    first_stage = read_description("pretrained:shepard_metzler_5_parts")["trained_with"][0]
    shipped = train_config_from_args(build_parser().parse_args(first_stage.split()[1:]))
    differ = {
        field: (getattr(cfg, field), getattr(shipped, field))
        for field in RECIPE
        if getattr(cfg, field) != getattr(shipped, field)
    }
    assert differ == {"config": ("demo", "views")}


def test_the_verdict_says_whether_the_pictures_beat_copying_the_context():
    def report(prior_mean, context_mean=20.0, nearest_view=19.5):
        r = {"prior_mean": {"psnr": prior_mean}, "context_mean": {"psnr": context_mean}}
        r["nearest_view"] = {"psnr": nearest_view}
        return {"step": 101, "results": {"1": r, "3": r, "5": r}}

    assert verdict(report(19.0)).startswith(
        "at step 101 the prior-mean prediction is 1.00 dB worse than copying a context view (K = 3): "
        "too few steps to learn the scenes"
    )
    assert verdict(report(21.25)).startswith(
        "at step 101 the prior-mean prediction beats both baselines by 1.25 dB at K = 3"
    )
