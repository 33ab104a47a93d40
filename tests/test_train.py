"""`gqn train`: schedules, exact resume, atomic checkpoints, DDP, logs, signals, bad input."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import free_port, make_dataset

import gqn.checkpoint
from gqn.checkpoint import check_same_model, load_checkpoint, save_checkpoint
from gqn.errors import GQNError
from gqn.metrics import bits_per_dim
from gqn.model import PRESETS
from gqn.runlog import read_metrics
from gqn.schedules import linear, lr_at, sigma_at
from gqn.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return str(make_dataset(tmp_path_factory.mktemp("data"), files=(2, 1), scenes_per_file=12))


def tiny(data, run_dir, **kw) -> TrainConfig:
    base = {
        "data": data,
        "run_dir": str(run_dir),
        "config": "tiny",
        "batch_size": 4,
        "max_steps": 6,
        "log_every": 1,
        "eval_every": 3,
        "image_every": 3,
        "checkpoint_every": 3,
        "workers": 0,
    }
    return TrainConfig(**{**base, **kw})


def test_schedules_endpoints_and_midpoints():
    assert (
        lr_at(0) == 5e-4
        and lr_at(1_600_000) == pytest.approx(5e-5)
        and lr_at(5_000_000) == pytest.approx(5e-5)
    )
    assert lr_at(800_000) == pytest.approx(2.75e-4)
    assert (
        sigma_at(0) == 2.0
        and sigma_at(200_000) == pytest.approx(0.7)
        and sigma_at(10**7) == pytest.approx(0.7)
    )
    assert sigma_at(100_000) == pytest.approx(1.35)
    assert linear(5, 1.0, 0.0, 0) == 0.0


def test_resume_is_exact(data, tmp_path):
    straight = train(tiny(data, tmp_path / "a"))
    train(tiny(data, tmp_path / "b", max_steps=3))
    resumed = train(tiny(data, tmp_path / "b", resume=str(tmp_path / "b"), workers=2))
    assert straight.step == resumed.step == 6
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [r["step"] for r in b] == list(range(1, 7))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]  # to the bit
    assert [r["kl"] for r in a] == [r["kl"] for r in b]
    wa, wb = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for key in wa["model"]:
        assert torch.equal(wa["model"][key], wb["model"][key]), key
    assert wa["data"] == wb["data"] and wa["step"] == 6


def test_resume_by_step_number_and_keep(data, tmp_path):
    train(tiny(data, tmp_path, max_steps=9, keep=2))
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["last.pt", "step-00000006.pt", "step-00000009.pt"]
    result = train(tiny(data, tmp_path, max_steps=10, resume="6"))
    assert result.step == 10
    assert [r["step"] for r in read_metrics(tmp_path)] == list(range(1, 11))  # 7..9 replaced, not doubled


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint({"step": 1, "model_config": {}, "w": torch.ones(3)}, tmp_path)
    real_save = torch.save

    def crash(obj, f):
        real_save(obj, f)
        f.truncate(100)  # half written
        raise KeyboardInterrupt

    monkeypatch.setattr(gqn.checkpoint.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 2, "model_config": {}, "w": torch.zeros(3)}, tmp_path)
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.pt", "step-00000001.pt"]
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))


def test_checkpoints_never_run_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "model_config": {}, "x": Payload()}, path)
    with pytest.raises(GQNError) as e:
        load_checkpoint(path)
    assert str(e.value) == (  # in our words, not the first line of torch's
        f"{path}: not a plain gqn checkpoint: it holds something other than tensors and plain values "
        "(a pickled object can run code), so it was not loaded and nothing in it was executed"
    )
    assert not (tmp_path / "pwned").exists()
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(GQNError, match=r"evil\.pt: not a readable gqn checkpoint"):
        load_checkpoint(path)


def test_checkpoint_of_another_config_or_version(data, tmp_path):
    first = train(tiny(data, tmp_path, max_steps=2))
    with pytest.raises(
        GQNError,
        match=r"last\.pt: trained with another model config \(L: 2 in checkpoint, 6 asked, h_channels: 16",
    ):
        train(tiny(data, tmp_path, config="small", max_steps=3, resume=str(tmp_path)))
    state = torch.load(first.checkpoint, weights_only=True)
    state["version"] = "9.9.0"
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(GQNError, match=r"old\.pt: written by gqn 9\.9\.0, this is gqn"):
        load_checkpoint(tmp_path / "old.pt")


def test_init_starts_from_the_weights_with_a_new_optimizer(data, tmp_path):
    source = train(tiny(data, tmp_path / "a", max_steps=3))
    # lr 0: one Adam step that moves nothing, so the new run holds exactly the source's weights
    tuned = train(tiny(data, tmp_path / "b", max_steps=1, lr_start=0.0, lr_end=0.0, init=str(tmp_path / "a")))
    old, new = load_checkpoint(source.checkpoint), load_checkpoint(tuned.checkpoint)
    assert new["step"] == 1 and new["train_config"]["init"] == str(tmp_path / "a")
    for key in old["model"]:
        assert torch.equal(old["model"][key], new["model"][key]), key
    assert {s["step"].item() for s in new["optimizer"]["state"].values()} == {1}  # not 3 + 1
    # Resuming a fine-tune continues it from its own weights; --init is only where a run starts.
    moved = train(tiny(data, tmp_path / "d", max_steps=1, init=str(tmp_path / "a")))
    still = {"lr_start": 0.0, "lr_end": 0.0}  # the resumed step moves nothing
    again = train(tiny(data, tmp_path / "d", max_steps=2, init=str(tmp_path / "a"), resume="auto", **still))
    assert again.step == 2
    own, resumed = load_checkpoint(moved.checkpoint)["model"], load_checkpoint(again.checkpoint)["model"]
    assert all(torch.equal(own[k], resumed[k]) for k in own)
    assert not all(torch.equal(own[k], old["model"][k]) for k in own)  # the first step moved them
    with pytest.raises(
        GQNError, match=r"last\.pt: trained with another model config \(L: 2 in checkpoint, 6 asked"
    ):
        train(tiny(data, tmp_path / "c", config="small", max_steps=1, init=str(tmp_path / "a")))


def test_init_grows_pixel_evidence_onto_weights_without_it(data, tmp_path, capsys):
    def grow(run, source, name, **fields):
        """One step of a run of the tiny epipolar model with these fields, from `source`'s weights
        at learning rate 0, so that what was loaded stays as it was (from scratch: the default)."""
        path = tmp_path / f"{name}.json"
        path.write_text(
            json.dumps({"model": {**PRESETS["tiny"].to_dict(), "representation": "epipolar", **fields}})
        )
        init = {} if source is None else {"init": str(tmp_path / source), "lr_start": 0.0, "lr_end": 0.0}
        return train(tiny(data, tmp_path / run, config=str(path), max_steps=1, **init))

    source = grow("a", None, "coarse")
    grown = grow("b", "a", "sharp", pixel_depths=4, search_hidden=8)
    assert "the pixel evidence is new (" in capsys.readouterr().out
    old, new = load_checkpoint(source.checkpoint)["model"], load_checkpoint(grown.checkpoint)["model"]
    assert all(torch.equal(old[k], new[k]) for k in old)  # all that was learned is kept
    assert {k.split(".")[0] for k in set(new) - set(old)} == {"evidence", "blend"}
    assert new["evidence.score.0.weight"].shape[0] == 8  # search_hidden
    # A model with pixel evidence may grow the search's spatial pass, and nothing else with it.
    spatial = grow("e", "b", "spatial", pixel_depths=4, search_hidden=8, search_spatial=3)
    assert "the spatial pass of the search is new (4 tensors)" in capsys.readouterr().out
    newer = load_checkpoint(spatial.checkpoint)["model"]
    assert all(torch.equal(new[k], newer[k]) for k in new)
    assert {k.rsplit(".", 2)[0] for k in set(newer) - set(new)} == {"evidence.spatial"}
    # ... and the views' depth test, alone or with the spatial pass.
    visible = grow("f", "b", "visible", pixel_depths=4, search_hidden=8, pixel_visibility=True)
    assert "the views' depth test is new (2 tensors)" in capsys.readouterr().out
    seeing = load_checkpoint(visible.checkpoint)["model"]
    assert set(seeing) - set(new) == {"evidence.occlusion", "evidence.margin"}
    assert all(torch.equal(new[k], seeing[k]) for k in new)
    with pytest.raises(GQNError, match=r"\(pixel_visibility: True in checkpoint, False asked\)"):
        grow("h", "f", "blind", pixel_depths=4, search_hidden=8)  # switching it off is refused
    both = dict(pixel_depths=4, search_hidden=8, pixel_visibility=True, search_spatial=3)
    grow("g", "b", "both", **both)
    assert (
        "the spatial pass of the search and the views' depth test are new (6 tensors)"
        in capsys.readouterr().out
    )
    # The search over views grows onto weights without pixel evidence, not onto a pooled search's
    # (its convolutions read more inputs).
    views = grow("i", "a", "views", pixel_depths=4, search_hidden=8, search_views=True)
    assert load_checkpoint(views.checkpoint)["model"]["evidence.score.0.weight"].shape[1] == 6 * 3 + 5
    with pytest.raises(GQNError, match=r"\(search_views: False in checkpoint, True asked\)"):
        grow("j", "b", "pooled", pixel_depths=4, search_hidden=8, search_views=True)
    # The blend's spatial pass grows onto a model with pixel evidence, all it had learned kept.
    blend = grow("k", "i", "blend", pixel_depths=4, search_hidden=8, search_views=True, blend_spatial=3)
    assert "the blend's spatial pass is new (6 tensors)" in capsys.readouterr().out
    viewing, blended = load_checkpoint(views.checkpoint)["model"], load_checkpoint(blend.checkpoint)["model"]
    assert all(torch.equal(viewing[k], blended[k]) for k in viewing)
    assert {k.rsplit(".", 2)[0] for k in set(blended) - set(viewing)} == {"blend.spatial"}
    # ... and so does the search's transmittance: a head on the score's last hidden layer and the
    # background's colour.
    through = dict(pixel_depths=4, search_hidden=8, search_views=True, search_weighting="transmittance")
    transmitted = load_checkpoint(grow("o", "i", "through", **through).checkpoint)["model"]
    assert "the search's transmittance is new (3 tensors)" in capsys.readouterr().out
    assert set(transmitted) - set(viewing) == {
        "evidence.background",
        "evidence.occupancy.weight",
        "evidence.occupancy.bias",
    }
    assert all(torch.equal(viewing[k], transmitted[k]) for k in viewing)
    with pytest.raises(
        GQNError, match=r"\(search_weighting: 'transmittance' in checkpoint, 'softmax' asked\)"
    ):
        grow("p", "o", "softmax", pixel_depths=4, search_hidden=8, search_views=True)
    # The search's loss only says how the weights are trained: --init may set it anew, all kept.
    mixed = grow("l", "i", "mixed", pixel_depths=4, search_hidden=8, search_views=True, search_width=0.2)
    assert " new (" not in capsys.readouterr().out
    assert load_checkpoint(mixed.checkpoint)["model_config"]["search_width"] == 0.2
    assert all(torch.equal(viewing[k], v) for k, v in load_checkpoint(mixed.checkpoint)["model"].items())
    # ... but a run resumed goes on as it began.
    saved = load_checkpoint(mixed.checkpoint)["model_config"]
    with pytest.raises(GQNError, match=r"\(search_width: 0\.2 in checkpoint, 0\.1 asked\)"):
        check_same_model(mixed.checkpoint, saved, {**saved, "search_width": 0.1})
    # So are where each pixel's depths lie along its ray and how many there are (no weight
    # depends on them) ...
    moved = dict(search_hidden=8, search_views=True, search_width=0.2, pixel_sampling="coarse")
    resampled = grow("m", "l", "resampled", pixel_depths=6, **moved)
    assert " new (" not in capsys.readouterr().out
    saved = load_checkpoint(resampled.checkpoint)["model_config"]
    assert (saved["pixel_sampling"], saved["pixel_depths"]) == ("coarse", 6)
    assert all(torch.equal(viewing[k], v) for k, v in load_checkpoint(resampled.checkpoint)["model"].items())
    with pytest.raises(GQNError, match=r"\(pixel_sampling: 'coarse' in checkpoint, 'uniform' asked\)"):
        check_same_model(resampled.checkpoint, saved, {**saved, "pixel_sampling": "uniform"})
    # ... unless the search's spatial pass is on: its channels are the depths.
    with pytest.raises(GQNError, match=r"\(pixel_depths: 4 in checkpoint, 6 asked\)"):
        grow("n", "e", "wider", pixel_depths=6, search_hidden=8, search_spatial=3)
    # Only the pixel stage may be new: any other field must still be the same.
    with pytest.raises(GQNError, match=r"another model config \(L: 2 in checkpoint, 3 asked"):
        grow("c", "a", "deeper", pixel_depths=4, L=3)


def test_a_checkpoint_older_than_a_model_config_field_resumes(data, tmp_path):
    """A field added to GQNConfig after a checkpoint was written counts as its default."""
    first = train(tiny(data, tmp_path, max_steps=1))
    state = torch.load(first.checkpoint, weights_only=True)
    del state["model_config"]["shared_core"]  # as if written before the field existed (default True)
    torch.save(state, tmp_path / "old.pt")
    assert train(tiny(data, tmp_path / "b", max_steps=2, resume=str(tmp_path / "old.pt"))).step == 2


def test_the_model_records_the_frame_size_it_learned_from(data, tmp_path):
    """Frames resized to 32 px: the model config says 32 (the size eval, analyze and render then
    feed it); otherwise it says the stored size."""
    resized = train(tiny(data, tmp_path / "a", max_steps=1, image_size=32))
    stored = train(tiny(data, tmp_path / "b", max_steps=1))
    sizes = [load_checkpoint(r.checkpoint)["model_config"]["image_size"] for r in (resized, stored)]
    assert sizes == [32, 64]


def test_non_finite_loss_stops_naming_the_step(data, tmp_path, monkeypatch):
    from gqn.model import GQN

    real = GQN.forward
    calls = []

    def poisoned(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(GQN, "forward", poisoned)
    with pytest.raises(
        GQNError, match=r"non-finite loss at step 3 .*last good checkpoint is .*step-00000002\.pt"
    ):
        train(tiny(data, tmp_path, checkpoint_every=2, eval_every=0))
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2


def test_tensorboard_events_read_back(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny(data, tmp_path))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/nll",
        "train/kl",
        "train/kl_step_00",
        "train/bits_per_dim",
        "train/mse",
        "train/psnr_of_batch_mse",
        "train/sigma",
        "train/lr",
        "train/grad_norm",
        "train/scenes_per_s",
        "eval/loss",
        "eval/psnr",
        "eval/prior_mean_psnr",
    ):
        assert tag in scalars, tag
    assert "train/psnr" not in scalars  # only eval/psnr, the mean of per-image PSNRs, is called that
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 7))
    assert events.Tags()["images"] == ["images/context_target_posterior_prior"]


def test_unknown_keys_in_a_config_file(data, tmp_path, capsys):
    from gqn.cli import main

    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model": {"L": 2}, "train": {"batchsize": 4}}))
    assert main(["train", "--data", data, "--config", str(path)]) == 1
    assert "run.json (train): unknown key(s) batchsize" in capsys.readouterr().err


def gqn_cli(*args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "gqn", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def tiny_cli(data, run_dir, flags: str) -> list[str]:
    """`gqn train` arguments for the tiny model on `data`, plus `flags`."""
    return [
        "train",
        "--data",
        data,
        "--run-dir",
        str(run_dir),
        "--config",
        "tiny",
        "--batch_size",
        "4",
        *flags.split(),
    ]


@pytest.mark.slow
def test_a_20_step_run_from_the_cli(data, tmp_path):
    run = gqn_cli(*tiny_cli(data, tmp_path, "--max-steps 20 --workers 2 --eval-every 10"))
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"step 20: checkpoint {tmp_path}/checkpoints/step-00000020.pt; loss ")
    assert len(read_metrics(tmp_path)) == 2 and len(read_metrics(tmp_path, "eval")) == 2


@pytest.mark.slow
@pytest.mark.parametrize("whole_group", [False, True], ids=["main-process", "every-process-with-workers"])
def test_sigterm_leaves_a_checkpoint_to_resume_from(data, tmp_path, whole_group):
    """SIGTERM to the main process, or (as schedulers and `kill -- -PGID` do) to every process of
    the run including its DataLoader workers: either way a checkpoint is saved."""
    workers = 2 if whole_group else 0
    run = gqn_cli(
        *tiny_cli(
            data, tmp_path, f"--max-steps 100000 --workers {workers} --log-every 1 --checkpoint-every 100000"
        ),
        start_new_session=True,
    )
    deadline = time.time() + 120
    while not (tmp_path / "metrics.jsonl").exists() or not (tmp_path / "metrics.jsonl").read_text():
        assert time.time() < deadline and run.poll() is None, run.communicate()
        time.sleep(0.2)
    if whole_group:
        os.killpg(run.pid, signal.SIGTERM)
    else:
        run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 128 + signal.SIGTERM, err
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] >= 1 and f"stopped by SIGTERM at step {state['step']}" in out
    again = gqn_cli(
        *tiny_cli(data, tmp_path, f"--resume {tmp_path} --max-steps {state['step'] + 2} --workers 0")
    )
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert f"resumed from {tmp_path}/checkpoints/last.pt at step {state['step']}" in out


@pytest.mark.slow
@pytest.mark.parametrize("steps", ["--max-steps 2", "--max-steps 3 --deterministic-steps 2"])
def test_two_process_ddp_equals_one_process(data, tmp_path, steps):
    """torchrun with 2 CPU processes (gloo), 2 scenes each, makes the same update as 1 process with 4,
    through the deterministic warm-up too (every parameter learns in both stages)."""
    flags = f"{steps} --workers 0 --eval-every 0 --log-every 1"
    one = gqn_cli(*tiny_cli(data, tmp_path / "one", flags))
    assert one.wait(timeout=120) == 0, one.stderr.read()
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
        "-m",
        "gqn",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    two = subprocess.run(
        [*torchrun, *tiny_cli(data, tmp_path / "two", flags)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    la, lb = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["loss"] for r in la] == pytest.approx([r["loss"] for r in lb], rel=1e-5)


def test_builtin_data_is_rendered_once_and_never_half(monkeypatch, capsys):
    import gqn.synth
    from gqn.defaults import default_data

    def broken(*args, **kwargs):
        raise KeyboardInterrupt  # the user gave up half way

    real = gqn.synth.synthesize
    monkeypatch.setattr(gqn.synth, "synthesize", broken)
    with pytest.raises(KeyboardInterrupt):
        default_data(train_scenes=20, test_scenes=5)
    cache = Path(os.environ["GQN_CACHE_DIR"]) / "data"
    assert list(cache.iterdir()) == []  # nothing that could pass for a finished render
    monkeypatch.setattr(gqn.synth, "synthesize", real)
    capsys.readouterr()
    path = default_data(train_scenes=20, test_scenes=5)
    assert path.name == "shepard_metzler_5_parts" and sorted(p.name for p in path.iterdir()) == [
        "test",
        "train",
    ]
    printed = capsys.readouterr().out  # says where the data lies, not where it was made
    assert f"under {path.parent}," in printed and ".tmp" not in printed
    monkeypatch.setattr(gqn.synth, "synthesize", broken)
    assert default_data(train_scenes=20, test_scenes=5) == path  # reused, not rendered again


def test_plot_command(data, tmp_path, capsys):
    from PIL import Image

    from gqn.cli import main

    train(tiny(data, tmp_path / "run"))
    assert main(["plot", str(tmp_path / "run"), "--out", str(tmp_path / "c.png")]) == 0
    assert Image.open(tmp_path / "c.png").size == (1680, 340)  # loss, MSE, KL, held-out PSNR
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "d.png")]) == 1
    assert "no metrics.jsonl" in capsys.readouterr().err
    # A plot is written in the format its extension names, or refused.
    assert main(["plot", str(tmp_path / "run"), "--out", str(tmp_path / "c.txt")]) == 1
    assert "c.txt: cannot write a plot as .txt; use .eps, " in capsys.readouterr().err


def test_resume_auto_starts_fresh_then_continues(data, tmp_path):
    first = train(tiny(data, tmp_path, max_steps=3, resume="auto"))
    assert first.step == 3
    again = train(tiny(data, tmp_path, max_steps=5, resume="auto"))
    assert again.step == 5 and [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5]
    done = train(tiny(data, tmp_path, max_steps=5, resume="auto"))  # nothing left to do
    assert done.step == 5 and done.checkpoint == tmp_path / "checkpoints" / "last.pt"


def test_resume_alone_goes_on_with_the_runs_own_settings(data, tmp_path):
    """`gqn train --resume RUN` needs none of RUN's flags again: its model config, data, batch size
    and schedules come from its checkpoint, the run folder is where RUN is now (it was moved),
    and a flag given again wins."""
    from gqn.cli import main

    first, flags = tmp_path / "run", ["--workers", "0", "--eval-every", "0", "--log-every", "1"]
    started = ["--data", data, "--run-dir", str(first), "--config", "tiny", "--batch-size", "2"]
    assert main(["train", *started, "--max-steps", "2", "--lr-start", "1e-3", *flags]) == 0
    run_dir = first.rename(tmp_path / "moved")
    assert main(["train", "--resume", str(run_dir), "--max-steps", "4", "--lr-start", "2e-3"]) == 0
    assert not first.exists()
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["step"] == 4 and [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3, 4]
    went_on = {k: state["train_config"][k] for k in ("config", "data", "batch_size", "run_dir", "eval_every")}
    assert went_on == {
        "config": "tiny",
        "data": data,
        "batch_size": 2,
        "run_dir": str(run_dir),
        "eval_every": 0,
    }
    assert state["train_config"]["lr_start"] == 2e-3  # given again


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for machines without GPUs")
def test_data_parallel_without_gpus_says_what_to_do(data, capsys):
    from gqn.cli import main

    assert main(["train", "--data", data, "--config", "tiny", "--data_parallel"]) == 1
    assert (
        "there is none; for several CPU processes use: torchrun --nproc-per-node N -m gqn train"
        in capsys.readouterr().err
    )


def test_max_minutes_stops_and_saves_and_the_next_run_continues(data, tmp_path, capsys):
    result = train(tiny(data, tmp_path, max_steps=1000, max_minutes=1e-9))  # out of time after step 1
    assert result.step == 1 and result.stopped_by is None
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 1
    assert "stopped by the 1e-09-minute limit at step 1" in capsys.readouterr().out
    assert train(tiny(data, tmp_path, max_steps=3, resume="auto")).step == 3


def test_plots_stitch_runs_that_continue_one_another(tmp_path):
    import json

    from gqn.plots import stitched

    for name, steps in (("a", range(10, 80, 10)), ("b", range(50, 100, 10))):
        (tmp_path / name).mkdir()
        lines = [json.dumps({"step": s, "split": "train", "loss": float(s), "run": name}) for s in steps]
        (tmp_path / name / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    records = stitched([tmp_path / "a", tmp_path / "b"], "train")
    assert [(r["step"], r["run"]) for r in records] == [(10, "a"), (20, "a"), (30, "a"), (40, "a")] + [
        (s, "b") for s in range(50, 100, 10)
    ]


def test_held_out_metrics_are_logged_and_recomputable_from_the_checkpoint(data, tmp_path):
    from gqn.checkpoint import load_model
    from gqn.held_out import evaluate_held_out, held_out_batch

    cfg = tiny(data, tmp_path, max_steps=3, eval_every=3, image_every=0)
    train(cfg)
    (record,) = read_metrics(tmp_path, "eval")
    views = {f"{m}_{k}" for m in ("view", "nearest_view") for k in ("gain_db", "identification")}
    keys = {"loss", "nll", "kl", "mse", "psnr", "prior_mean_psnr", "bits_per_dim"} | views
    assert set(record) == {"step", "split"} | keys and record["step"] == 3
    assert record["loss"] == pytest.approx(record["nll"] + record["kl"], rel=1e-6)
    assert record["bits_per_dim"] == pytest.approx(bits_per_dim(record["loss"], 3 * 64 * 64))

    class Log:
        def scalars(self, step, split, values):
            self.values = values

    # The same numbers from the saved weights: the held-out batch is fixed by the seed, and the
    # sigma is the one of the step just taken (sigma_at of step 2, before the count became 3).
    model, _ = load_model(tmp_path / "checkpoints" / "step-00000003.pt")
    sigma = sigma_at(2, cfg.sigma_start, cfg.sigma_end, cfg.sigma_steps)
    log = Log()
    evaluate_held_out(model, held_out_batch(data, cfg), sigma, 3, log, "cpu", cfg, 3 * 64 * 64, images=False)
    assert log.values.keys() == keys
    for key in keys:
        assert log.values[key] == pytest.approx(record[key], rel=1e-4, abs=1e-6), key


def test_a_missing_test_split_means_no_held_out_evaluation_and_says_so(tmp_path, capsys):
    import shutil

    data = make_dataset(tmp_path / "d", files=(1, 1), scenes_per_file=8)
    shutil.rmtree(data / "test")
    train(tiny(str(data), tmp_path / "run", max_steps=2, eval_every=1))
    assert read_metrics(tmp_path / "run", "eval") == [] and len(read_metrics(tmp_path / "run")) == 2
    assert "no held-out evaluation: " in capsys.readouterr().err


def test_a_corrupt_test_split_is_an_error_naming_the_file(tmp_path):
    data = make_dataset(tmp_path / "d", files=(1, 1), scenes_per_file=8)
    (data / "test" / "1-of-1.tfrecord").write_bytes(b"not a tfrecord, though it has the name of one")
    with pytest.raises(GQNError, match=r"test/1-of-1\.tfrecord"):
        train(tiny(str(data), tmp_path / "run", max_steps=2, eval_every=1))


def test_bits_per_dim_known_answers():
    # A density of 1 on [0, 1]^D (0 nats) is 1/255 per level on the 0..255 scale: log2(255) bits.
    assert bits_per_dim(0.0, 12288) == pytest.approx(7.994353, abs=1e-6)
    # One more bit per dimension is D ln 2 nats.
    assert bits_per_dim(12288 * math.log(2), 12288) == pytest.approx(8.994353, abs=1e-6)


def test_a_run_stopped_by_its_time_limit_ends_with_a_held_out_evaluation(data, tmp_path):
    """Shorter than --eval-every, it still has a held-out point for curves.png."""
    result = train(tiny(data, tmp_path, max_steps=1000, eval_every=1000, max_minutes=1e-9))
    assert result.step == 1  # the limit passed during the first step
    assert [r["step"] for r in read_metrics(tmp_path, "eval")] == [1]


def test_a_time_limited_run_counts_minutes_not_steps():
    from gqn.train import progress_bar

    timed = progress_bar(TrainConfig(max_steps=100_000, max_minutes=10), step=40, lead=True)
    assert (timed.total, timed.n) == (10, 0)
    plain = progress_bar(TrainConfig(max_steps=2000), step=40, lead=True)
    assert (plain.total, plain.n) == (2000, 40)
    timed.close()
    plain.close()
