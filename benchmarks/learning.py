"""What a model learns in the same minutes of this machine: the recipe-deciding benchmark.

    python benchmarks/learning.py --minutes 8 --at 2,4,8 small epipolar
    python benchmarks/learning.py --minutes 8 epipolar epipolar:ray_weighting=transmittance
    python benchmarks/learning.py --minutes 8 epipolar epipolar:lr_start=1e-3 epipolar:batch_size=8
    python benchmarks/learning.py --minutes 10 epipolar epipolar@6+configs/sharp-grown.json

Each RUN is a model config (a preset or a .json file) with optional `:field=value,...`
overrides of model-config fields (`ray_weighting`, `depth_samples`, ...) or training fields
(`lr_start`, `batch_size`, `sigma_end`, ...). A RUN may be grown in stages, `STAGE@M+STAGE...`:
each stage (a config with its overrides, as a RUN) trains until minute M of the run, and the
next starts from its last checkpoint's weights (`gqn train --init`, a new optimizer at step 0).
Every run trains with `gqn train` on the same data (the built-in Shepard-Metzler scenes unless --data) from the same seed, stopping at each of the
--at minutes (training time only) to be scored on the same --scenes held-out scenes at K = 3:
prior-mean PSNR, its gain over the better baseline, SSIM (how sharp), view gain and view identification (see
`gqn eval`). The table ends with each run's figures as a ratio to the first run's.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from contextlib import nullcontext
from dataclasses import fields, replace
from pathlib import Path

import torch

from gqn.checkpoint import load_model
from gqn.config import TrainConfig, get_config
from gqn.defaults import open_dataset
from gqn.model import GQNConfig
from gqn.scoring import evaluate, gain_over_baselines
from gqn.train import train

MODEL_FIELDS = {f.name: f for f in fields(GQNConfig)}
TRAIN_FIELDS = {f.name: f for f in fields(TrainConfig)}


def parse_run(spec: str, folder: Path) -> tuple[str, dict]:
    """ "NAME[:field=value,...]" -> (config name or JSON path, train-config overrides)."""
    name, _, rest = spec.partition(":")
    model, train_fields = {}, {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        target, known = (model, MODEL_FIELDS) if key in MODEL_FIELDS else (train_fields, TRAIN_FIELDS)
        if key not in known:
            raise SystemExit(f"{spec}: {key} is neither a model nor a training field")
        kind = known[key].type.replace(" | None", "")
        target[key] = {"int": int, "float": float, "bool": lambda s: s == "true"}.get(kind, str)(value)
    if not model:
        return name, train_fields
    config = replace(get_config(name), **model)
    path = folder / f"{spec.replace('/', '_').replace(':', '_').replace('=', '-').replace(',', '_')}.json"
    path.write_text(json.dumps({"model": config.to_dict()}))
    return str(path), train_fields


def parse_stages(spec: str, folder: Path) -> list[tuple[str, dict, float]]:
    """ "STAGE@M+STAGE..." -> [(config, overrides, the minute the stage ends)], the last endless."""
    parts = spec.split("+")
    stages = []
    for i, part in enumerate(parts):
        body, at, end = part.rpartition("@")
        if not at:
            body = part
        if (i < len(parts) - 1) != bool(at):
            raise SystemExit(
                f"{spec}: every stage but the last ends at a minute (STAGE@M), the last does not"
            )
        try:
            ends = float(end) if at else math.inf
        except ValueError:
            raise SystemExit(f"{spec}: {end!r} after @ is not a number of minutes") from None
        if stages and ends <= stages[-1][2]:
            raise SystemExit(f"{spec}: the stages' minutes must increase")
        stages.append((*parse_run(body, folder), ends))
    return stages


def score(run_dir: Path, data: str | None, scenes: int) -> dict:
    model, loaded = load_model(run_dir)
    dataset = open_dataset(data, "test", model.config.image_size)
    report = evaluate(model, dataset, scenes=scenes, contexts=(3,), samples=0, sigma=loaded.sigma)
    r = report["results"]["3"]
    return {
        "step": loaded.step,
        "psnr": r["prior_mean"]["psnr"],
        "ssim": r["prior_mean"]["ssim"],
        "over_baseline": gain_over_baselines(report, k=3),
        "view_gain": r["views"]["prior_mean"]["gain_db"],
        "view_id": r["views"]["prior_mean"]["identification"],
        "nearest_view_gain": r["views"]["nearest_view"]["gain_db"],
        "nearest_view_id": r["views"]["nearest_view"]["identification"],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "runs", nargs="+", metavar="RUN", help="NAME[:field=value,...], or stages: NAME...@M+NAME..."
    )
    p.add_argument("--minutes", type=float, default=8.0, help="training minutes per run")
    p.add_argument("--at", default=None, help="minutes at which to score (default: quarters)")
    p.add_argument("--data", default=None, help="ROOT/DATASET (default: the built-in data)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--scenes", type=int, default=100, help="held-out scenes scored")
    p.add_argument("--out", default=None, help="also write the figures to this JSON file")
    p.add_argument(
        "--keep", default=None, help="keep the run folders in this folder (default: a temporary one)"
    )
    p.add_argument("--reference", default=None, help="the run the ratios are to (default: the first)")
    args = p.parse_args()
    marks = (
        [float(m) for m in args.at.split(",")] if args.at else [args.minutes * q / 4 for q in (1, 2, 3, 4)]
    )
    print(
        f"{torch.get_num_threads()} threads; batch {args.batch_size}; scored on {args.scenes} held-out scenes, K = 3"
    )
    results: dict[str, list[dict]] = {}
    if args.keep:
        if Path(args.keep).exists() and any(Path(args.keep).iterdir()):
            p.error(f"--keep {args.keep}: not empty (its run folders would be resumed, not trained anew)")
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    with nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory(prefix="gqn-learning-") as tmp:
        runs = {spec: parse_stages(spec, Path(tmp)) for spec in args.runs}  # every spec checked first
        for spec, stages in runs.items():
            results[spec] = []
            stage, trained = 0, 0.0
            for mark in marks:
                while True:  # train the stages up to this mark, growing each from the last
                    config, overrides, ends = stages[stage]
                    run_dir = Path(tmp) / f"run-{len(results)}-{stage}"
                    if trained < min(mark, ends) or not run_dir.exists():  # else: trained to its end
                        settings = {
                            "data": args.data,
                            "run_dir": str(run_dir),
                            "config": config,
                            "batch_size": args.batch_size,
                            "max_minutes": max(min(mark, ends) - trained, 0.05),
                            "eval_every": 0,
                            "image_every": 0,
                            "checkpoint_every": 10**9,
                            "log_every": 50,
                            "workers": 1,
                            "resume": "auto",
                        }
                        if stage:  # grown from the last stage's weights
                            settings["init"] = str(Path(tmp) / f"run-{len(results)}-{stage - 1}")
                        cfg = TrainConfig(**{**settings, **overrides})  # a run's own batch_size or seed wins
                        start = time.monotonic()
                        result = train(cfg)
                        trained += (time.monotonic() - start) / 60
                        if result.stopped_by:  # Ctrl-C or a kill: gqn train saved and stopped; so does this
                            raise SystemExit(f"{spec}: stopped by {result.stopped_by} at step {result.step}")
                    if mark <= ends or stage == len(stages) - 1:
                        break
                    stage += 1
                figures = {"minutes": trained, **score(run_dir, args.data, args.scenes)}
                results[spec].append(figures)
                print(
                    f"{spec:<40} {figures['minutes']:6.1f} min {figures['step']:6d} steps  "
                    f"PSNR {figures['psnr']:6.2f} dB ({figures['over_baseline']:+.2f} over baselines)  SSIM {figures['ssim']:.3f}  "
                    f"view gain {figures['view_gain']:5.2f} dB  identification {figures['view_id']:.2f}",
                    flush=True,
                )
                if args.out:  # after every mark, so a long benchmark cut short keeps what it measured
                    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    reference = args.reference or args.runs[0]
    first = results[reference][-1]
    print()
    print(
        f"{'run':<40} {'min':>5} {'steps':>6} {'PSNR':>6} {'+base':>6} {'SSIM':>5} {'gain':>5} {'ident':>5}   "
        f"ratios to {reference}"
    )
    for spec, rows in results.items():
        last = rows[-1]
        print(
            f"{spec:<40} {last['minutes']:5.1f} {last['step']:6d} {last['psnr']:6.2f} "
            f"{last['over_baseline']:+6.2f} {last['ssim']:5.3f} {last['view_gain']:5.2f} {last['view_id']:5.2f}   "
            f"view gain x{last['view_gain'] / max(first['view_gain'], 1e-3):.1f}, "
            f"identification x{last['view_id'] / first['view_id']:.2f}, steps x{last['step'] / first['step']:.2f}"
        )
    nearest = first
    print(
        f"nearest context view (baseline): view gain {nearest['nearest_view_gain']:.2f} dB, "
        f"identification {nearest['nearest_view_id']:.2f}"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
