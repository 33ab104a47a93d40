"""Pretrained weights: export from a checkpoint, load by name or path, refuse damaged files."""

import itertools
import json
import re
import shlex
from dataclasses import asdict, fields
from pathlib import Path

import pytest
import torch
from conftest import TRAINED_STEPS, tiny_training

import gqn
from gqn.checkpoint import available, dataset_of, load_model, load_weights, read_description
from gqn.cli import build_parser, main
from gqn.config import TrainConfig, train_command, train_config_from_args, training_commands
from gqn.data.table import get_dataset
from gqn.defaults import DATASET
from gqn.errors import GQNError
from gqn.export import export
from gqn.scoring import gain_over_baselines

# `gqn render pretrained:shepard_metzler_5_parts --data examples/reference`, as in the README
REFERENCE_PRIOR_MEAN_PSNR = 21.72


# What `train_command` leaves out of a command line: where a run is written, what it resumed
# from, and how it ran (workers, device, a time limit), none of which changes what it learns.
NOT_IN_COMMANDS = ("run_dir", "resume", "workers", "device", "max_minutes")


@pytest.fixture(scope="module")
def exported(trained_tiny, tmp_path_factory):
    """The session's trained tiny model, exported as weights + JSON."""
    data, run = trained_tiny
    weights, meta = export(run, "tiny", tmp_path_factory.mktemp("pretrained"), eval_report={"results": {}})
    return data, run, weights, meta


def parse_train(command: str) -> TrainConfig:
    """The TrainConfig a `gqn train` command line runs, parsed as `gqn` parses it."""
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert command.startswith("gqn train ") and args.command == "train", command
    return train_config_from_args(args)


def learned(train_config: dict, leave_out: tuple[str, ...] = ()) -> dict:
    """The fields of a train config (defaults where it lacks one) that decide what a run learns."""
    skip = NOT_IN_COMMANDS + leave_out
    return {f.name: train_config.get(f.name, f.default) for f in fields(TrainConfig) if f.name not in skip}


def test_exported_weights_predict_exactly_what_the_checkpoint_does(exported):
    data, run, weights, meta = exported
    a, loaded_a = load_model(run)
    b, loaded_b = load_model(weights)
    assert loaded_b.step == loaded_a.step == TRAINED_STEPS and loaded_b.config == loaded_a.config
    assert (
        loaded_b.sigma == pytest.approx(loaded_a.sigma) == pytest.approx(2.0 - 1.3 * TRAINED_STEPS / 200_000)
    )
    assert loaded_a.origin is None and loaded_b.origin["name"] == "tiny" and loaded_b.path == str(weights)
    x, v = torch.rand(2, 3, 3, 64, 64), torch.randn(2, 3, 7)
    qv = torch.randn(2, 7)
    torch.testing.assert_close(
        a.sample(x, v, qv, use_mean=True), b.sample(x, v, qv, use_mean=True), rtol=0, atol=0
    )
    described = json.loads(meta.read_text())
    assert described["model_config"]["L"] == a.config.L
    assert described["eval"] == {"results": {}}
    # Its recipe is one `gqn train` command line that runs the checkpoint's own training again.
    (command,) = described["trained_with"]
    again = parse_train(command)
    assert learned(asdict(again)) == learned(loaded_a.train_config) and again.data == data
    assert (again.run_dir, again.resume) == ("runs/tiny-1", None)
    assert weights.stat().st_size < 25e6


def test_train_command_leaves_out_defaults_and_the_builtin_data():
    config = {"data": "/c/data/shepard_metzler_5_parts-10000-500-seed0/shepard_metzler_5_parts"}
    settings = {"sigma_steps": 3000, "precision": "bf16", "run_dir": "x", "max_minutes": 90.0}
    assert train_command({**config, **settings}) == ("gqn train --sigma-steps 3000 --precision bf16")


def test_recipe_of_a_model_trained_in_two_stages():
    first = {"step": 700, "train_config": {"sigma_steps": 300, "max_steps": 10**5}}
    second = {"step": 900, "train_config": {"sigma_start": 2.0, "sigma_end": 2.0, "max_steps": 10**5}}
    assert training_commands("m", [first, second]) == [
        "gqn train --max-steps 700 --sigma-steps 300 --run-dir runs/m-1",
        "gqn train --max-steps 900 --sigma-end 2.0 --run-dir runs/m-2 --resume runs/m-1/checkpoints/step-00000700.pt",
    ]


def test_recipe_of_a_model_grown_from_an_earlier_stage():
    """A stage that began with --init naming the last stage's run folder (or a checkpoint in it)
    starts from its weights with a new optimizer: its command says --init, not --resume."""
    first = {"step": 700, "train_config": {"run_dir": "/r/sm-1", "deterministic_steps": 4500}}
    for init in ("/r/sm-1", "/r/sm-1/checkpoints/last.pt"):
        second = {"step": 900, "train_config": {"run_dir": "/r/sm-2", "init": init, "sigma_steps": 400}}
        assert training_commands("m", [first, second]) == [
            "gqn train --max-steps 700 --deterministic-steps 4500 --run-dir runs/m-1",
            "gqn train --max-steps 900 --sigma-steps 400 --init runs/m-1/checkpoints/step-00000700.pt "
            "--run-dir runs/m-2",
        ]
    # --init naming weights exported from it: its origin was trained to that stage's step.
    exported = {**second, "train_config": {**second["train_config"], "init": "pretrained:m"}}
    assert training_commands("m", [first, {**exported, "init_origin": {"name": "m", "step": 700}}])[1] == (
        "gqn train --max-steps 900 --sigma-steps 400 --init runs/m-1/checkpoints/step-00000700.pt --run-dir runs/m-2"
    )
    # weights exported at another step are not that stage's: the stage resumed from it.
    elsewhere = training_commands("m", [first, {**exported, "init_origin": {"name": "m", "step": 500}}])
    assert elsewhere[1].endswith("--resume runs/m-1/checkpoints/step-00000700.pt")
    # --init naming any other folder is not that stage's: the stage resumed from it.
    other = {"step": 900, "train_config": {"run_dir": "/r/sm-2", "init": "/r/sm-10", "sigma_steps": 400}}
    assert training_commands("m", [first, other])[1].endswith(
        "--resume runs/m-1/checkpoints/step-00000700.pt"
    )


def test_recipe_of_a_model_fine_tuned_from_pretrained_weights():
    """Its own commands follow the ones that made the weights it started from; --init names the
    last checkpoint of those, not the pretrained name (which the new weights may replace)."""
    origin = {"name": "m", "step": 900, "trained_with": ["gqn train A --run-dir runs/m-1", "gqn train B"]}
    init = {"init": "pretrained:m", "lr_start": 1e-4, "max_steps": 10**5}
    tuned = [{"step": 50, "train_config": init}, {"step": 80, "train_config": init}]
    assert training_commands("m", tuned, origin) == [
        "gqn train A --run-dir runs/m-1",
        "gqn train B",
        "gqn train --max-steps 50 --lr-start 0.0001 --init runs/m-2/checkpoints/step-00000900.pt --run-dir runs/m-3",
        "gqn train --max-steps 80 --lr-start 0.0001 --run-dir runs/m-4 "
        "--resume runs/m-3/checkpoints/step-00000050.pt",
    ]


def test_a_fine_tune_records_its_origin_when_it_starts(exported, tmp_path):
    """Replacing the weights it started from (say, by exporting the fine-tune under the same name)
    leaves its recipe naming the original commands, recorded in the checkpoint at step 0."""
    from gqn.train import train

    data, _, weights, described = exported
    origin = tmp_path / "origin"
    origin.mkdir()
    for f in (weights, weights.with_suffix(".json")):
        (origin / f.name).write_bytes(f.read_bytes())
    tuned, init = tmp_path / "tuned", str(origin / "tiny.safetensors")
    train(tiny_training(data, tuned, max_steps=2, init=init))
    export(tuned, "tiny", origin)  # replaces the weights it started from
    train(tiny_training(data, tuned, max_steps=4, init=init, resume="auto"))
    _, meta = export(tuned, "tuned", tmp_path)
    commands = json.loads(meta.read_text())["trained_with"]
    assert str(tmp_path) not in meta.read_text()  # no path of the machine that trained it
    assert len(commands) == 2 and commands[0] == json.loads(described.read_text())["trained_with"][0]
    assert (
        f"--max-steps 4 --eval-every 0 --init runs/tiny-1/checkpoints/step-{TRAINED_STEPS:08d}.pt --run-dir runs/tuned-2"
        in commands[1]
    )


def test_damaged_or_mismatched_weights_are_refused(exported, tmp_path):
    _, _, weights, meta = exported
    bad = tmp_path / "tiny.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    bad.write_bytes(data)
    (tmp_path / "tiny.json").write_text(meta.read_text())
    with pytest.raises(GQNError, match=r"tiny\.safetensors: SHA-256 .* does not match tiny\.json"):
        load_weights(bad)
    bad.write_bytes(weights.read_bytes())
    described = json.loads(meta.read_text())
    described["model_config"]["h_channels"] += 1
    (tmp_path / "tiny.json").write_text(json.dumps(described))
    with pytest.raises(GQNError, match=r"does not fit the config in tiny\.json"):
        load_weights(bad)
    (tmp_path / "tiny.json").unlink()
    with pytest.raises(GQNError, match=r"tiny\.json: missing"):
        load_weights(bad)


def test_unknown_pretrained_name_lists_the_available_ones(capsys):
    assert main(["render", "pretrained:nope", "--out", "/tmp/never.png"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gqn: error: pretrained:nope: no such pretrained model; available: ")
    assert err.count("\n") == 1


def test_shipped_shepard_metzler_weights_load_by_name():
    assert "shepard_metzler_5_parts" in available()
    model = gqn.load_pretrained("shepard_metzler_5_parts")
    assert not model.training
    meta = read_description("pretrained:shepard_metzler_5_parts")
    assert (
        meta["dataset"] == "shepard_metzler_5_parts" and meta["model_config"]["representation"] == "epipolar"
    )


@pytest.mark.parametrize("name", available())
def test_the_shipped_weights_recipe_runs_the_training_they_record(name):
    """Every `trained_with` line parses as a `gqn train` command line; each stage resumes (or, a
    fine-tune, starts with --init) where the one before stopped, and the last runs the recorded
    train config, on the recorded dataset, to the recorded step."""
    meta = read_description(f"pretrained:{name}")
    stages = [parse_train(command) for command in meta["trained_with"]]
    assert stages[0].resume is None and stages[0].init is None
    assert len({s.run_dir for s in stages}) == len(stages)
    for before, after in itertools.pairwise(stages):
        assert (after.resume or after.init) == f"{before.run_dir}/checkpoints/step-{before.max_steps:08d}.pt"
    last = stages[-1]
    recorded = {**meta["train_config"], "max_steps": meta["step"]}  # it stopped there
    # --init names the checkpoint that made the weights it started from, not their pretrained name
    assert learned(asdict(last), ("data", "init")) == learned(recorded, ("data", "init"))
    assert (dataset_of(last.data) or DATASET) == meta["dataset"]  # no --data: the built-in data


@pytest.mark.parametrize(
    "name, queries, over_baselines",
    [("shepard_metzler_5_parts", 10, 4.0), ("rooms_ring_camera", 5, 3.5)],
)
def test_shipped_weights_turn_with_the_camera(name, queries, over_baselines):
    """Issue 14's bar, on the 200 held-out scenes of each eval table at 3 context views."""
    at_3 = read_description(f"pretrained:{name}")["eval"]["results"]["3"]
    assert at_3["views"]["queries"] == queries
    assert at_3["views"]["prior_mean"]["gain_db"] >= 4.0
    assert at_3["views"]["prior_mean"]["identification"] >= 0.8
    best_baseline = max(at_3["context_mean"]["psnr"], at_3["nearest_view"]["psnr"])
    assert at_3["prior_mean"]["psnr"] - best_baseline >= over_baselines


@pytest.mark.parametrize("name", available())
def test_every_shipped_model_is_small_described_and_beats_the_baselines(name):
    model, meta = load_weights(f"pretrained:{name}")[0], read_description(f"pretrained:{name}")
    assert Path(meta["path"]).stat().st_size < 25e6 and meta["name"] == meta["dataset"] == name
    assert model.config.image_size == get_dataset(name).image_size  # each at its dataset's own size
    assert all(c.startswith("gqn train ") for c in meta["trained_with"])
    assert meta["eval"]["scenes"] == 200 and gain_over_baselines(meta["eval"], k=3) >= 2.0


def test_cli_export(exported, tmp_path, capsys):
    _, run, _, _ = exported
    assert main(["export", str(run), "--name", "m", "--out", str(tmp_path)]) == 0
    assert "m.safetensors" in capsys.readouterr().out
    assert read_description(tmp_path / "m.safetensors")["name"] == "m"


def test_cli_export_records_a_smaller_eval_for_ci_beside_the_full_one(exported, tmp_path, capsys):
    _, run, _, _ = exported
    full, check = tmp_path / "full.json", tmp_path / "check.json"
    full.write_text(json.dumps({"checkpoint": "/here/run", "scenes": 200, "results": {"3": {}}}))
    check.write_text(json.dumps({"checkpoint": "/here/run", "scenes": 20, "results": {"3": {}}}))
    out = tmp_path / "w"
    assert (
        main(
            ["export", str(run), "--name", "m", "--out", str(out), "--eval", str(full), "--check", str(check)]
        )
        == 0
    )
    meta = read_description(out / "m.safetensors")
    assert meta["eval"] == {"scenes": 200, "results": {"3": {}}}  # where it was measured is local
    assert meta["eval_check"] == {"scenes": 20, "results": {"3": {}}}
    capsys.readouterr()
    assert main(["export", str(run), "--name", "n", "--out", str(out), "--check", str(check)]) == 1
    assert (
        capsys.readouterr().err
        == "gqn: error: --check is the smaller eval beside --eval's: give --eval too\n"
    )
    assert not (out / "n.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", available())
def test_gqn_eval_reproduces_the_shipped_eval_table(name, tmp_path):
    """The held-out scenes of the data it was trained on (scene i depends only on seed, split and
    i, so rendering just the test split gives the same scenes), evaluated as its JSON says: the
    smaller "eval_check" where the export recorded one (a model whose full table is too slow for
    CI), else the README's table itself."""
    from gqn.data import SceneDataset
    from gqn.scoring import evaluate
    from gqn.synth import synthesize

    model, meta = load_weights(f"pretrained:{name}")[0], read_description(f"pretrained:{name}")
    shipped = meta.get("eval_check", meta["eval"])
    synthesize(meta["dataset"], tmp_path, 0, shipped["scenes"], seed=0, progress=False)
    test = SceneDataset(tmp_path / meta["dataset"], split="test")
    contexts = tuple(int(k) for k in shipped["results"])
    report = evaluate(
        model, test, shipped["scenes"], contexts, shipped["samples"], shipped["sigma"], shipped["seed"]
    )
    for k, expected in shipped["results"].items():
        got = report["results"][k]
        assert got["elbo_nats"] == pytest.approx(expected["elbo_nats"], abs=0.5)
        for method in ("posterior", "prior_mean", "prior_sample", "context_mean", "nearest_view"):
            for metric, tol in (("mse", 1e-5), ("psnr", 0.01), ("ssim", 1e-3)):
                want = pytest.approx(expected[method][metric], abs=tol)
                assert got[method][metric] == want, f"K={k} {method} {metric}"
        for method in ("prior_mean", "nearest_view"):
            for metric, tol in (("gain_db", 0.01), ("identification", 1e-3)):
                want = pytest.approx(expected["views"][method][metric], abs=tol)
                assert got["views"][method][metric] == want, f"K={k} views {method} {metric}"


def test_render_of_the_real_reference_scene(reference_file, tmp_path, capsys):
    """The figure the README shows next to the truth: trained on synthetic data, asked about a
    real DeepMind scene."""
    reference = str(Path(reference_file).parents[2])
    out = tmp_path / "reference.png"
    assert main(["render", "pretrained:shepard_metzler_5_parts", "--data", reference, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    prior_mean = float(re.search(r"prior mean (\d+\.\d+) dB", printed).group(1))
    assert prior_mean == pytest.approx(REFERENCE_PRIOR_MEAN_PSNR, abs=0.02)
    assert out.stat().st_size > 0
