"""Weights that ship with gqn: trained by this project, on its own synthetic data, with `gqn train`.

    gqn render pretrained:shepard_metzler_5_parts --scene 0 --orbit --out orbit.gif
    gqn eval pretrained:shepard_metzler_5_parts --scenes 200

    import gqn
    model = gqn.load_pretrained("shepard_metzler_5_parts")

A pretrained model is two files in `gqn/weights/` (or anywhere, named by path):

    NAME.safetensors   the model's tensors (safetensors: plain data, nothing in it can run)
    NAME.json          what rebuilds and explains it: the model config, the step and pixel sigma it
                       was trained to, the `gqn train` command that made it, the SHA-256 of the
                       weights file and the eval table measured on it

`gqn export CHECKPOINT --name NAME --out DIR` writes the pair from a training checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import fields
from pathlib import Path

import torch

from gqn import __version__
from gqn.checkpoint import load_checkpoint, resolve
from gqn.errors import GQNError
from gqn.files import atomic_write
from gqn.model import GQN, GQNConfig

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
PREFIX = "pretrained:"
FORMAT = 1


def available() -> list[str]:
    """Names of the pretrained models that ship with this gqn."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json") if p.with_suffix(".safetensors").exists())


def is_pretrained(source: str | os.PathLike) -> bool:
    """Whether `source` names pretrained weights ("pretrained:NAME" or a .safetensors file)."""
    return str(source).startswith(PREFIX) or str(source).endswith(".safetensors")


def weights_path(source: str | os.PathLike) -> Path:
    """The .safetensors file of "pretrained:NAME" or of a path."""
    source = str(source)
    if source.startswith(PREFIX):
        name = source[len(PREFIX) :]
        if name not in available():
            raise GQNError(
                f"{source}: no such pretrained model; available: {', '.join(available()) or 'none'}"
            )
        return WEIGHTS_DIR / f"{name}.safetensors"
    path = Path(source)
    if not path.exists():
        raise GQNError(f"{path}: no such weights file")
    return path


def load_weights(source: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[GQN, dict]:
    """A model from "pretrained:NAME" or NAME.safetensors (+ NAME.json beside it), in eval mode,
    and its description (the JSON, with "path" added). Checks the weights' SHA-256 first."""
    from safetensors.torch import load

    path = weights_path(source)
    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise GQNError(f"{meta_path}: missing (the config that goes with {path.name})") from None
    except ValueError as e:
        raise GQNError(f"{meta_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "model_config" not in meta:
        raise GQNError(f"{meta_path}: not a gqn weights description of format {FORMAT}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.get("sha256"):
        raise GQNError(
            f"{path}: SHA-256 {digest[:12]}... does not match {meta_path.name} "
            f"({str(meta.get('sha256'))[:12]}...): the file is damaged or from another model"
        )
    try:
        tensors = load(data)
    except Exception as e:  # safetensors raises its own error types for malformed headers
        raise GQNError(f"{path}: not a readable safetensors file ({e})") from None
    model = GQN(GQNConfig.from_dict(meta["model_config"], where=str(meta_path)))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        wrong = sorted(k for k in set(expected) | set(found) if expected.get(k) != found.get(k))
        detail = ", ".join(f"{k}: {found.get(k)} in file, {expected.get(k)} in config" for k in wrong[:2])
        raise GQNError(
            f"{path}: does not fit the config in {meta_path.name} ({len(wrong)} tensors differ; {detail})"
        )
    model.load_state_dict(tensors)
    model.to(device).eval()
    return model, {**meta, "path": str(path)}


def load_pretrained(name: str, device: str | torch.device = "cpu") -> GQN:
    """The pretrained model `name` (see `available()`), in eval mode."""
    return load_weights(PREFIX + name, device)[0]


def train_command(train_config: dict, step: int | None = None) -> str:
    """The `gqn train` command line that reproduces a run (to `step`, if given): the flags that
    differ from the defaults (the data flag left out for the built-in data, a time limit left out
    since --max-steps says where the run stopped; where the run was written and from what it
    resumed are for the caller to add)."""
    from gqn.defaults import DATASET
    from gqn.train import TrainConfig

    config = dict(train_config, **({} if step is None else {"max_steps": step}))
    parts = ["gqn train"]
    for f in fields(TrainConfig):
        value = config.get(f.name, f.default)
        if f.name in ("run_dir", "resume", "workers", "device", "max_minutes") or value == f.default:
            continue
        if f.name == "data" and Path(value).name == DATASET and "-seed" in Path(value).parent.name:
            continue  # the built-in data: rendered by `gqn data builtin`
        flag = f"--{f.name.replace('_', '-')}"
        parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)


def recipe(name: str, stages: list[dict], origin: dict | None = None) -> list[str]:
    """The commands that reproduce a model trained in stages (checkpoint states, first to last):
    each stage runs in runs/NAME-K and the next resumes from its last checkpoint. `origin`: the
    description (weights JSON) of the pretrained weights the first stage started from (--init),
    whose own commands come first and whose last checkpoint the first stage's --init names."""
    commands = list(origin["trained_with"]) if origin else []
    first = len(commands) + 1
    for k, state in enumerate(stages, first):
        config, resume = dict(state.get("train_config", {})), ""
        if k > first:
            config.pop("init", None)  # a resumed stage takes its checkpoint's weights
            resume = f" --resume runs/{name}-{k - 1}/checkpoints/step-{stages[k - first - 1]['step']:08d}.pt"
        elif origin:
            config["init"] = f"runs/{origin['name']}-{k - 1}/checkpoints/step-{origin['step']:08d}.pt"
        commands.append(train_command(config, state["step"]) + f" --run-dir runs/{name}-{k}" + resume)
    return commands


def export(
    checkpoint: str | os.PathLike,
    name: str,
    out: str | os.PathLike = WEIGHTS_DIR,
    eval_report: dict | None = None,
    earlier: list[str | os.PathLike] = (),
) -> tuple[Path, Path]:
    """Write NAME.safetensors and NAME.json into `out` from a training checkpoint (or run folder);
    `earlier`: the checkpoints of earlier training stages it was resumed from, first to last."""
    from safetensors.torch import save

    from gqn.evaluate import run_sigma

    path = resolve(str(checkpoint), None)
    state = load_checkpoint(path)
    stages = [load_checkpoint(resolve(str(p), None)) for p in earlier] + [state]
    # The weights the first stage started from, as recorded when it started (checkpoints from
    # before gqn recorded it: as they are now, which is right unless they were replaced since).
    origin = stages[0].get("init_origin")
    init = stages[0].get("train_config", {}).get("init")
    if origin is None and init and is_pretrained(init):
        origin = load_weights(init)[1]
    tensors = {k: v.detach().cpu().contiguous() for k, v in state["model"].items()}
    data = save(tensors)
    train_config = state.get("train_config", {})
    meta = {
        "format": FORMAT,
        "name": name,
        "gqn_version": __version__,
        "model_config": state["model_config"],
        "step": state["step"],
        "sigma": run_sigma(state),
        "dataset": Path(train_config["data"]).name if train_config.get("data") else None,
        "trained_with": recipe(name, stages, origin),
        "train_config": {k: v for k, v in train_config.items() if k not in ("run_dir", "data", "resume")},
        "sha256": hashlib.sha256(data).hexdigest(),
        "parameters": sum(t.numel() for t in tensors.values()),
    }
    if eval_report is not None:
        meta["eval"] = {k: v for k, v in eval_report.items() if k != "checkpoint"}  # a local path
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights, description = out / f"{name}.safetensors", out / f"{name}.json"
    with atomic_write(weights) as f:
        f.write(data)
    with atomic_write(description, "w") as f:
        f.write(json.dumps(meta, indent=2) + "\n")
    return weights, description


def add_parser(sub) -> None:
    from gqn.cli import HelpFormatter

    p = sub.add_parser(
        "export",
        help="a checkpoint's weights as safetensors + config JSON (what pretrained: names load)",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint file or a run folder")
    p.add_argument("--name", required=True, help="NAME of NAME.safetensors and NAME.json")
    p.add_argument("--out", default=".", help="folder to write into (gqn/weights/ ships with gqn)")
    p.add_argument("--eval", default=None, help="an eval JSON of `gqn eval` to record with the weights")
    p.add_argument(
        "--earlier",
        action="append",
        default=[],
        metavar="CHECKPOINT",
        help="a checkpoint of an earlier training stage this one resumed from (repeat, first to last)",
    )
    p.set_defaults(run=run)


def run(args) -> int:
    report = None
    if args.eval is not None:
        try:
            report = json.loads(Path(args.eval).read_text())
        except (OSError, ValueError) as e:
            raise GQNError(f"{args.eval}: cannot read the eval report ({e})") from None
    for path in export(args.checkpoint, args.name, args.out, report, args.earlier):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0
