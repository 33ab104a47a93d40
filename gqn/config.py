"""The configs of a run and how they are spelled: model presets and files, `TrainConfig`, its
flags, and the `gqn train` command lines that reproduce a run.

    get_config("small")                         # a preset of gqn.model.PRESETS
    get_config("my.json")                       # {"model": {...}, "train": {...}} or the model fields
    TrainConfig(data="data/shepard_metzler_5_parts", config="paper", batch_size=36)

Every field of `TrainConfig` is a flag of `gqn train`: `batch_size` is `--batch-size` (`flag`
is that rule, used both to parse and to write command lines); the underscore spelling
(`--batch_size=144`, as in the seed's own command lines) still parses but is not shown.
A `--config` JSON file may hold a "train" section: defaults, then that section, then the flags.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from gqn.arguments import boolean, hidden_alias
from gqn.data.table import DATASETS
from gqn.defaults import is_builtin
from gqn.errors import GQNError
from gqn.fields import check_fields, from_dict
from gqn.model import PRESETS, GQNConfig


def get_config(name_or_path: str, **overrides) -> GQNConfig:
    """A preset by name, or a JSON file of config fields (missing fields take the defaults): the
    fields themselves, a {"model": fields} file, or exported weights' NAME.json ("model_config"),
    which trains the exact model of those weights whatever the presets have become since."""
    if name_or_path in PRESETS:
        config = PRESETS[name_or_path]
    elif name_or_path.endswith(".json"):
        d = read_json(name_or_path)
        fields = d.get("model", d.get("model_config", d))
        config = GQNConfig.from_dict(fields, where=name_or_path)
    else:
        raise GQNError(f"unknown config {name_or_path!r}; presets: {', '.join(PRESETS)}, or a .json file")
    return replace(config, **overrides) if overrides else config


def read_json(path: str) -> dict:
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        raise GQNError(f"{path}: cannot read config: {e}") from None
    if not isinstance(d, dict):
        raise GQNError(f"{path}: expected a JSON object of config fields, got a {type(d).__name__}")
    return d


def model_config(cfg: TrainConfig, stored_size: int | None = None) -> GQNConfig:
    """--config's model for frames of --image-size, else of the data's `stored_size` (None: as the
    config says): a config that cannot take that size is a one-line error naming it."""
    size = cfg.image_size or stored_size
    if size is None:
        return get_config(cfg.config)
    try:
        return get_config(cfg.config, image_size=size)
    except GQNError as error:
        said = f"--image-size {size}" if cfg.image_size else f"the data's frames of {size} px"
        raise GQNError(f"{said} for --config {cfg.config}: {error}") from None


def with_cameras(model_cfg: GQNConfig, dataset_name: str) -> GQNConfig:
    """The epipolar representation and pixel evidence need the cameras' field of view and depth
    bounds: those the config does not set come from the dataset's description."""
    if not model_cfg.needs_cameras:
        return model_cfg
    info = DATASETS.get(dataset_name)
    fill = {
        name: getattr(info, name)
        for name in ("fov", "near", "far")
        if getattr(model_cfg, name) is None and info is not None
    }
    return replace(model_cfg, **fill)


@dataclass
class TrainConfig:
    data: str | None = field(
        default=None,
        metadata={"help": "ROOT/DATASET; default: the built-in synthetic shepard_metzler_5_parts"},
    )
    run_dir: str = field(
        default="runs/gqn", metadata={"help": "checkpoints/, metrics.jsonl and tensorboard/ go here"}
    )
    config: str = field(
        default="small",
        metadata={"help": f"model: preset ({', '.join(PRESETS)}) or a .json file"},
    )
    batch_size: int = field(
        default=36, metadata={"help": "scenes per step, over all processes (paper: 36)", "min": 1}
    )
    max_context: int = field(
        default=5, metadata={"help": "context size drawn per batch from 1..this", "min": 1}
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "resize frames to this size; the model records it for eval and render (default: as stored)",
            "min": 8,
        },
    )
    max_steps: int = field(
        default=2_000_000, metadata={"help": "stop after this many steps (paper: about 2M)", "min": 1}
    )
    max_minutes: float = field(
        default=0.0,
        metadata={
            "help": "also stop, saving, after this many minutes of this invocation (0: no limit)",
            "min": 0,
        },
    )
    lr_start: float = field(default=5e-4, metadata={"help": "Adam learning rate at step 0 (paper)", "min": 0})
    lr_end: float = field(
        default=5e-5, metadata={"help": "learning rate from --lr-steps on (paper)", "min": 0}
    )
    lr_steps: int = field(
        default=1_600_000, metadata={"help": "steps of the linear learning-rate decay (paper)", "min": 0}
    )
    sigma_start: float = field(
        default=2.0, metadata={"help": "pixel standard deviation at step 0 (paper)", "above": 0}
    )
    sigma_end: float = field(
        default=0.7, metadata={"help": "pixel standard deviation from --sigma-steps on (paper)", "above": 0}
    )
    sigma_steps: int = field(
        default=200_000, metadata={"help": "steps of the linear sigma annealing (paper)", "min": 0}
    )
    deterministic_steps: int = field(
        default=0,
        metadata={
            "help": "a deterministic warm-up: for this many steps the prior-mean prediction is "
            "regressed on the query, while the inference network learns to agree with the prior",
            "min": 0,
        },
    )
    checkpoint_every: int = field(default=1000, metadata={"help": "steps between checkpoints", "min": 1})
    keep: int = field(
        default=3, metadata={"help": "step checkpoints kept besides last.pt (0: all of them)", "min": 0}
    )
    eval_every: int = field(
        default=1000,
        metadata={"help": "steps between evaluations of the held-out batch (0: never)", "min": 0},
    )
    log_every: int = field(default=10, metadata={"help": "steps between metric records", "min": 1})
    image_every: int = field(
        default=1000, metadata={"help": "steps between image grids in TensorBoard (0: never)", "min": 0}
    )
    workers: int = field(
        default=2, metadata={"help": "DataLoader worker processes per training process", "min": 0}
    )
    seed: int = field(
        default=0, metadata={"help": "seeds the weights, the data order and the noise", "min": 0}
    )
    precision: str = field(
        default="fp32", metadata={"help": "fp32 or bf16 (autocast)", "choices": ["fp32", "bf16"]}
    )
    compile: bool = field(default=False, metadata={"help": "torch.compile the model"})
    device: str = field(
        default="auto",
        metadata={
            "help": "auto (CUDA if present), cpu, cuda or cuda:N",
            "pattern": (r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N"),
        },
    )
    data_parallel: bool = field(default=False, metadata={"help": "one process per GPU on this machine (DDP)"})
    resume: str | None = field(
        default=None,
        metadata={
            "help": "a run folder, a checkpoint file, a step number of --run-dir, or auto (--run-dir's last.pt if any); "
            "the run goes on with the settings it was started with (model config, data, run folder, schedules), "
            "but for the flags given again"
        },
    )
    init: str | None = field(
        default=None,
        metadata={
            "help": "start from these weights (a checkpoint, run folder, pretrained:NAME or .safetensors) "
            "with a new optimizer at step 0: fine-tuning; a resumed run takes its checkpoint's weights"
        },
    )
    skip_corrupt: bool = field(
        default=False,
        metadata={
            "help": "train past corrupt records (each replaced by the next sound scene, with a warning) "
            "instead of saving and stopping at the first"
        },
    )

    def __post_init__(self):
        check_fields(self, label=lambda name: f"{name} ({flag(name)})")

    @classmethod
    def from_dict(cls, d: dict, where: str = "train config") -> TrainConfig:
        return from_dict(cls, d, where)


# ----------------------------------------------------------------------------------------------
# Flags: one per TrainConfig field


def flag(name: str) -> str:
    """The flag of a config field: `batch_size` -> `--batch-size`."""
    return "--" + name.replace("_", "-")


def add_flags(p: argparse.ArgumentParser) -> None:
    """A flag per TrainConfig field, default None (meaning: not given), with a hidden alias for
    the underscore spelling; a bool flag takes no value or `=true`/`=false`."""
    for f in fields(TrainConfig):
        kind = f.type.replace(" | None", "")
        if kind == "bool":
            options = dict(nargs="?", const=True, type=boolean, default=None, metavar="BOOL")
        else:
            typ = {"int": int, "float": float, "str": str}[kind]
            options = dict(type=typ, default=None, choices=f.metadata.get("choices"), metavar=f.name.upper())
        default = "" if f.default is None else f" (default: {f.default})"
        p.add_argument(flag(f.name), dest=f.name, help=f.metadata["help"] + default, **options)
        if "_" in f.name:
            hidden_alias(p, f"--{f.name}", f.name, **options)


def train_section(config: str | None) -> dict:
    """The "train" section of a --config JSON file; empty for a preset or no config."""
    return read_json(config).get("train", {}) if config and config.endswith(".json") else {}


def run_dir_of(args: argparse.Namespace) -> str:
    """The run folder the flags name: --run-dir, else the --config JSON's, else the default."""
    return args.run_dir or train_section(args.config).get("run_dir") or TrainConfig.run_dir


def train_config_from_args(args: argparse.Namespace, resumed: dict | None = None) -> TrainConfig:
    """Defaults, then the "train" section of a --config JSON file, then `resumed` (the settings of
    the run that --resume continues, as its checkpoint records them), then the flags given."""
    config = args.config or (resumed or {}).get("config")
    cfg = TrainConfig.from_dict(train_section(config), where=f"{config} (train)")
    known = {f.name for f in fields(TrainConfig)} - {"resume"}
    cfg = replace(cfg, **{k: v for k, v in (resumed or {}).items() if k in known})
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
    return replace(cfg, **given)  # checked again, as every TrainConfig is


# ----------------------------------------------------------------------------------------------
# Command lines that reproduce a run


def train_command(train_config: dict, step: int | None = None) -> str:
    """The `gqn train` command line that reproduces a run (to `step`, if given): the flags that
    differ from the defaults (the data flag left out for the built-in data, a time limit left out
    since --max-steps says where the run stopped; where the run was written and from what it
    resumed are for the caller to add)."""
    config = dict(train_config, **({} if step is None else {"max_steps": step}))
    parts = ["gqn train"]
    for f in fields(TrainConfig):
        value = config.get(f.name, f.default)
        if f.name in ("run_dir", "resume", "workers", "device", "max_minutes") or value == f.default:
            continue
        if f.name == "data" and is_builtin(value):
            continue  # the built-in data: rendered by `gqn data builtin`
        parts.append(flag(f.name) if value is True else f"{flag(f.name)} {value}")
    return " ".join(parts)


def training_commands(name: str, stages: list[dict], origin: dict | None = None) -> list[str]:
    """The commands that reproduce a model trained in stages (checkpoint states, first to last):
    each stage runs in runs/NAME-K and the next resumes from its last checkpoint, or starts from
    its weights (--init) if it began with --init naming that stage's run folder or a checkpoint in
    it, or naming weights exported from it (`exported_from`). `origin`: the description (weights
    JSON) of the pretrained weights the first stage started from (--init), whose own commands come
    first and whose last checkpoint its --init names."""
    commands = list(origin["trained_with"]) if origin else []
    first = len(commands) + 1
    for k, state in enumerate(stages, first):
        config, resume = dict(state.get("train_config", {})), ""
        if k > first:
            previous = stages[k - first - 1]
            checkpoint = f"runs/{name}-{k - 1}/checkpoints/step-{previous['step']:08d}.pt"
            init = config.pop("init", None)
            if within(init, previous.get("train_config", {}).get("run_dir")) or exported_from(
                state, previous
            ):
                config["init"] = checkpoint  # grown from it: its weights, a new optimizer
            else:
                resume = f" --resume {checkpoint}"  # a resumed stage takes its checkpoint's weights
        elif origin:
            config["init"] = f"runs/{origin['name']}-{k - 1}/checkpoints/step-{origin['step']:08d}.pt"
        commands.append(train_command(config, state["step"]) + f" --run-dir runs/{name}-{k}" + resume)
    return commands


def exported_from(state: dict, previous: dict) -> bool:
    """Whether a stage's checkpoint state began (--init) from pretrained weights exported from the
    stage `previous`: the weights it records as its origin were trained to that stage's step."""
    origin = state.get("init_origin")
    return bool(origin) and origin.get("step") == previous.get("step")


def within(path: str | None, folder: str | None) -> bool:
    """Whether `path` is the run folder `folder` or a file in it (both as given on that machine)."""
    if not path or not folder:
        return False
    path, folder = Path(path).expanduser().resolve(), Path(folder).expanduser().resolve()
    return path == folder or folder in path.parents
