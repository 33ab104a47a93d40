"""The main job in one command: data, training, evaluation and novel views in one folder.

    gqn demo                       # what `make demo` runs: about 10 minutes on 2 CPU cores
    gqn demo --minutes 60          # train longer (re-running continues where it stopped)

1. the built-in data (10,000 + 500 synthetic shepard_metzler_5_parts scenes, rendered once),
2. `gqn train` of the `demo` model (the `views` model, pixel evidence, with a cheaper step: 8
   depths per pixel, an eighth of the pixels per step) with the recipe measured best for ten
   minutes (batch 8, learning rate 1e-3, a deterministic warm-up of 4,500 steps, fp32), stopped
   after --minutes (or at --steps), resumable,
3. the training curves, the eval table (K = 1, 3, 5 context views, with both baselines), a
   render grid and an orbit GIF of a held-out scene, from the model just trained,
4. the same grid and orbit from the pretrained weights that ship with gqn, for comparison.

Everything lands in --out and its paths are printed. A re-run reuses what exists: the data, the
checkpoints (training continues from the last one until --steps) and every output that is newer
than the last checkpoint. One demo writes into an --out at a time: a second is refused (`gqn.lock`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from gqn.arguments import HelpFormatter, data, scene
from gqn.cameras import orbit_cameras
from gqn.checkpoint import available, checkpoint_dir, list_steps, load_model
from gqn.data.table import camera_path
from gqn.defaults import dataset_path, open_dataset
from gqn.errors import GQNError
from gqn.files import atomic_write, write_json
from gqn.images import save_animation, save_image
from gqn.lock import claim
from gqn.novel_views import render_grid, render_orbit
from gqn.plots import training_curves
from gqn.scoring import SCENES, evaluate, fit_scenes, format_table, gain_over_baselines
from gqn.train import TrainConfig, train

# The recipe of the shipped shepard_metzler_5_parts weights' first stage (batch 8 at twice the
# paper's learning rate, the warm-up, sigma schedule, seed: what benchmarks/learning.py measured
# best for ten minutes of this machine) with the `demo` preset in place of that stage's `views`:
# the same model with 8 depths per pixel and an eighth of the pixels per step, which in ten minutes
# made 1.8 times the steps of `views` and learned more than it and than `epipolar`, the demo's
# model until 2026-12-07 (README "Pixel-level evidence"). Ten minutes are the warm-up's first
# ~2,300 steps: a soft shape that turns (README).
RECIPE = {
    "config": "demo",
    "batch_size": 8,
    "lr_start": 1e-3,
    "deterministic_steps": 4500,
    "sigma_steps": 30000,
    "precision": "fp32",
    "seed": 0,
}


def fresh(path: Path, than: Path) -> bool:
    """Whether `path` exists and was written after `than`."""
    return path.exists() and path.stat().st_mtime >= than.stat().st_mtime


def demo(
    out: str | os.PathLike = "out",
    minutes: float = 10.0,
    steps: int = 100_000,
    data: str | os.PathLike | None = None,
    eval_scenes: int | None = None,
    scene: int = 0,
    workers: int = 1,
    **recipe,
) -> dict[str, Path]:
    """Run the main job into `out`; returns {what: path}. `recipe` overrides RECIPE's fields."""
    unknown = set(recipe) - set(RECIPE)
    if unknown:
        raise GQNError(
            f"demo: unknown recipe field(s) {', '.join(sorted(unknown))}; known: {', '.join(RECIPE)}"
        )
    out = Path(out)
    with claim(out):  # one demo writes into `out` at a time; its training claims out/run too
        run_dir = out / "run"
        data = dataset_path(data)
        test = open_dataset(data, "test")
        if not 0 <= scene < len(test):
            raise GQNError(f"--scene {scene}: {test.dataset_name}/test has scenes 0..{len(test) - 1}")
        eval_scenes = fit_scenes(eval_scenes, SCENES, test, "--eval-scenes")

        # --- train (or continue) ---
        done = max(list_steps(run_dir), default=0)
        if done < steps:
            cfg = TrainConfig(
                data=str(data),
                run_dir=str(run_dir),
                max_steps=steps,
                max_minutes=minutes,
                workers=workers,
                resume="auto",
                checkpoint_every=250,
                eval_every=250,
                image_every=1000,
                log_every=10,
                **{**RECIPE, **recipe},
            )
            print(
                f"training {cfg.config} for up to {minutes:g} minutes (step {done} of {steps}) in {run_dir}"
            )
            started = time.monotonic()
            result = train(cfg)
            took = time.monotonic() - started
            print(
                f"trained {result.step - done} steps in {took / 60:.1f} minutes ({took / max(1, result.step - done):.2f} s "
                f"per step of {cfg.batch_size} scenes), step {result.step} in all"
            )
        last = checkpoint_dir(run_dir) / "last.pt"
        if not last.exists():
            raise GQNError(f"{run_dir}: training wrote no checkpoint")

        # --- measure and show ---
        files = {"curves": out / "curves.png", "checkpoint": last}
        if not fresh(files["curves"], last):
            training_curves(run_dir, files["curves"])
        model, loaded = load_model(last)
        files["eval"], files["eval_json"] = out / "eval.txt", out / "eval.json"
        if not fresh(files["eval_json"], last):
            print(f"evaluating step {loaded.step} on {eval_scenes} held-out scenes")
            report = evaluate(model, test, eval_scenes, (1, 3, 5), sigma=loaded.sigma)
            report.update(checkpoint=str(last), step=loaded.step)
            with atomic_write(files["eval"], "w") as f:
                f.write(format_table(report) + "\n")
            write_json(report, files["eval_json"])
        print((files["eval"]).read_text(), end="")
        print(verdict(json.loads(files["eval_json"].read_text())))

        orbit = orbit_cameras(camera_path(test.dataset_name))
        models = [("", model, last)]
        if test.dataset_name in available():
            weights, shipped = load_model(f"pretrained:{test.dataset_name}")
            models.append(("pretrained-", weights, Path(shipped.path)))
        for prefix, m, source in models:
            s = open_dataset(data, "test", m.config.image_size)[scene]  # the frame size it learned from
            grid_png, orbit_gif = out / f"{prefix}grid.png", out / f"{prefix}orbit.gif"
            if not fresh(grid_png, source):
                save_image(render_grid(m, s.frames, s.cameras, context=3), grid_png)
            if not fresh(orbit_gif, source):
                save_animation(render_orbit(m, s.frames, s.cameras, orbit, context=3), orbit_gif)
            files[f"{prefix}grid"], files[f"{prefix}orbit"] = grid_png, orbit_gif
        return files


def verdict(report: dict) -> str:
    """What the eval table means for the pictures: whether the model's prediction beats copying
    the context (the better baseline at 3 context views), and what to do if it does not."""
    k = min(3, max(map(int, report["results"])))
    gain = gain_over_baselines(report, k)
    if gain > 0:
        return (
            f"at step {report['step']} the prior-mean prediction beats both baselines by {gain:.2f} dB at "
            f"K = {k}: grid.png and orbit.gif show what it has learned so far; more steps sharpen it"
        )
    return (
        f"at step {report['step']} the prior-mean prediction is {-gain:.2f} dB worse than copying a context "
        f"view (K = {k}): too few steps to learn the scenes, so grid.png and orbit.gif show dark or "
        f"blurred blobs, not objects; a re-run continues training from this step (--minutes: how long)"
    )


DESCRIPTIONS = {
    "checkpoint": "the trained model (gqn eval/render/analyze take it)",
    "curves": "training curves: loss, MSE, KL against the step",
    "eval": "eval table: ELBO, MSE, PSNR, SSIM with baselines",
    "eval_json": "the same, as JSON",
    "grid": "held-out scene: context, truth, posterior, prior mean, samples",
    "orbit": "orbit GIF: the camera circles the object, predicted from 3 views",
    "pretrained-grid": "the same grid from the shipped pretrained weights",
    "pretrained-orbit": "the same orbit from the shipped pretrained weights",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job: built-in data, train the demo model, eval, grid, orbit GIF (make demo)",
        description=__doc__,
        formatter_class=HelpFormatter,
        parents=[data(split=False), scene("held-out scene of the grid and orbit")],
    )
    p.add_argument("--out", default="out", help="folder for everything")
    p.add_argument("--minutes", type=float, default=10.0, help="training time of this run (0: no limit)")
    p.add_argument("--steps", type=int, default=100_000, help="stop training at this step")
    p.add_argument(
        "--eval-scenes",
        type=int,
        default=None,
        help=f"held-out scenes in the eval table (default: {SCENES}, or all the split has if fewer)",
    )
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    p.add_argument("--config", default=RECIPE["config"], help="model preset or JSON file")
    p.add_argument("--batch-size", type=int, default=RECIPE["batch_size"], help="scenes per step")
    p.set_defaults(run=run)


def run(args) -> int:
    files = demo(
        args.out,
        args.minutes,
        args.steps,
        args.data,
        args.eval_scenes,
        args.scene,
        args.workers,
        config=args.config,
        batch_size=args.batch_size,
    )
    print(f"results in {args.out}/:")
    for key, path in files.items():
        print(f"  {path!s:<28} {DESCRIPTIONS[key]}")
    return 0
