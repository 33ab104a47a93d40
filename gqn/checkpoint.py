"""Every source of a trained model, in one place: training checkpoints and exported weights.

    model, loaded = load_model("runs/gqn")                  # a run folder: its checkpoints/last.pt
    model, loaded = load_model("runs/gqn/checkpoints/step-00002000.pt")
    model, loaded = load_model("pretrained:shepard_metzler_5_parts")   # weights that ship with gqn
    model, loaded = load_model("elsewhere/NAME.safetensors")           # + NAME.json beside it
    loaded.step, loaded.sigma, loaded.config, loaded.path, loaded.origin

This module resolves each of them, reads them and writes them: the layouts below are written and
read here and nowhere else. What a loaded model knows about itself is a `Loaded`.

Training checkpoints. A checkpoint is a `torch.save`d dict of tensors and plain values only:

    format, version        checkpoint format number and the gqn version that wrote it
    step                   optimizer steps taken
    model_config           the GQNConfig fields: enough to rebuild the model
    train_config           the TrainConfig fields the run was started with
    dataset                the name of the dataset it learned from (its folder in the layout)
    model, optimizer       state dicts
    rng                    torch CPU (and CUDA) generator states
    data                   the sampler's position: epoch and batch within it
    init_origin            (runs begun with --init pretrained weights) their name, step and
                           training commands, as they were when the run began

It is written to a temporary file in the same folder, flushed to disk and renamed, so a crash
mid-save leaves the previous checkpoint whole. `checkpoints/last.pt` is a hard link to the
newest one. Loading uses `torch.load(weights_only=True)`: no code from the file ever runs.

    run/checkpoints/step-00001000.pt, step-00002000.pt, ..., last.pt

Exported weights (`gqn export`): two files in `gqn/weights/` (or anywhere, named by path):

    NAME.safetensors   the model's tensors (safetensors: plain data, nothing in it can run)
    NAME.json          what rebuilds and explains it: format, the model config, the step and pixel
                       sigma it was trained to, the `gqn train` commands that made it
                       ("trained_with"), the SHA-256 of the weights file and the eval table
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gqn import __version__
from gqn.data.table import SPLITS
from gqn.defaults import is_builtin
from gqn.errors import GQNError
from gqn.files import atomic_write, write_json, writing
from gqn.model import GQN, GQNConfig
from gqn.schedules import sigma_at

FORMAT = 1  # of checkpoints
WEIGHTS_FORMAT = 1  # of NAME.json
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
PREFIX = "pretrained:"


@dataclass(frozen=True)
class Loaded:
    """What a loaded model knows about itself."""

    path: str  # the checkpoint or .safetensors file it came from
    step: int  # optimizer steps it was trained for
    sigma: float  # the pixel standard deviation of its training at that step
    config: GQNConfig
    origin: dict | None = None  # pretrained weights: their name, step and training commands
    train_config: dict = field(default_factory=dict)  # checkpoints: the TrainConfig fields of the run
    init_origin: dict | None = None  # checkpoints: the pretrained weights the run started from
    dataset: str | None = None  # the dataset it learned from, where known: verbs default to its data


def load_model(
    source: str | os.PathLike, device: str | torch.device = "cpu", flag: str | None = None
) -> tuple[GQN, Loaded]:
    """A trained model, in eval mode, from a checkpoint file, a run folder, "pretrained:NAME" or a
    .safetensors file; and what it knows about itself. `flag`: how the user named it, for errors."""
    if is_pretrained(source):
        return load_weights(source, device)
    path = resolve(str(source), flag=flag)
    state = load_checkpoint(path, map_location=device)
    require(path, state, ("step", "model"), "it holds no trained model")
    loaded = describe(path, state)
    model = GQN(loaded.config).to(device)
    model.load_state_dict(state["model"])
    return model.eval(), loaded


def load_pretrained(name: str, device: str | torch.device = "cpu") -> GQN:
    """The pretrained model `name` (see `available()`), in eval mode."""
    return load_weights(PREFIX + name, device)[0]


# ----------------------------------------------------------------------------------------------
# Training checkpoints

_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(state: dict, run_dir: str | os.PathLike, keep: int = 3) -> Path:
    """Write `state` as step-NNNNNNNN.pt, point last.pt at it, keep the newest `keep` step files."""
    folder = checkpoint_dir(run_dir)
    path = folder / f"step-{state['step']:08d}.pt"
    with atomic_write(path) as f:  # a full disk: a GQNError naming the file, the temporary removed
        torch.save({"format": FORMAT, "version": __version__, **state}, f)
    link = folder / f"last.pt.{os.getpid()}.tmp"
    with writing(folder / "last.pt"):
        if link.exists():
            link.unlink()
        os.link(path, link)
        os.replace(link, folder / "last.pt")  # atomic: last.pt is always a whole checkpoint
    for old in list_steps(run_dir)[:-keep] if keep > 0 else []:
        (folder / f"step-{old:08d}.pt").unlink()
    return path


def remove_leftovers(run_dir: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of saves that were killed before their rename (each up to a
    whole checkpoint); returns what was removed. Only a run that owns `run_dir` calls this."""
    folder = checkpoint_dir(run_dir)
    found = sorted(folder.glob(".step-*.pt.*.tmp")) + sorted(folder.glob("last.pt.*.tmp"))
    for path in found:
        path.unlink(missing_ok=True)
    return found


def list_steps(run_dir: str | os.PathLike) -> list[int]:
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for n in os.listdir(folder) if (m := _STEP_FILE.match(n)))


def resolve(source: str, run_dir: str | os.PathLike | None = None, flag: str | None = None) -> Path:
    """The checkpoint `source` names: a file, a run folder (its last.pt) or, given `run_dir`, a
    step number of that run. `flag` is how the user passed it (`--resume`), for the errors."""
    said = f"{flag} {source}" if flag else source
    if source.isdigit() and run_dir is not None:
        path = checkpoint_dir(run_dir) / f"step-{int(source):08d}.pt"
        if not path.exists():
            steps = ", ".join(map(str, list_steps(run_dir))) or "none"
            raise GQNError(f"{said}: no checkpoint of step {source} in {run_dir} (steps: {steps})")
        return path
    p = Path(source)
    if p.is_dir():
        for candidate in (checkpoint_dir(p) / "last.pt", p / "last.pt"):
            if candidate.exists():
                return candidate
        raise GQNError(f"{said}: no checkpoints/last.pt in this folder")
    if not p.exists():
        raise GQNError(f"{said}: no such file or folder")
    return p


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint without running any code from it; errors name the file and the problem."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise GQNError(f"{path}: no such checkpoint") from None
    except pickle.UnpicklingError:  # weights_only refused what is not a tensor or plain value
        raise GQNError(
            f"{path}: not a plain gqn checkpoint: it holds something other than tensors and plain values "
            "(a pickled object can run code), so it was not loaded and nothing in it was executed"
        ) from None
    except Exception as e:  # a truncated zip, not a torch file at all
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GQNError(f"{path}: not a readable gqn checkpoint ({first[:200]})") from None
    if not isinstance(state, dict) or "format" not in state or "model_config" not in state:
        raise GQNError(f"{path}: not a gqn checkpoint (no format or model_config)")
    if state["format"] != FORMAT:
        raise GQNError(
            f"{path}: checkpoint format {state['format']}, this gqn {__version__} reads format {FORMAT}"
        )
    if _minor(state.get("version", "")) != _minor(__version__):
        raise GQNError(
            f"{path}: written by gqn {state.get('version')}, this is gqn {__version__}; "
            f"resume with the version that wrote it"
        )
    if "model" in state:
        check_finite(path, state["model"])
    return state


def require(path: str | os.PathLike, state: dict, keys: tuple[str, ...], otherwise: str) -> None:
    """A checkpoint must hold `keys`; else an error naming the file, what is missing and `otherwise`."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise GQNError(f"{path}: a checkpoint without {', '.join(missing)}: {otherwise}")


def check_finite(path: str | os.PathLike, tensors: dict) -> None:
    """Weights holding NaN or inf are damaged (or from a run that diverged): an error, never a model
    whose every prediction is NaN."""
    bad = [k for k, t in tensors.items() if isinstance(t, torch.Tensor) and not torch.isfinite(t).all()]
    if bad:
        raise GQNError(
            f"{path}: {len(bad)} weight tensor(s) hold NaN or inf ({', '.join(bad[:3])}): damaged weights"
        )


def training_state(
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    model_config: GQNConfig,
    train_config: dict,
    position: dict,
    device: torch.device,
    init_origin: dict | None = None,
    dataset: str | None = None,
) -> dict:
    """The checkpoint of a training run at `step` (the layout in the module docstring)."""
    rng = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }
    return {
        "step": step,
        "model_config": model_config.to_dict(),
        "train_config": train_config,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng,
        "data": dict(position),
        "dataset": dataset,
        **({"init_origin": init_origin} if init_origin else {}),
    }


@dataclass(frozen=True)
class Resumed:
    """Where a training run starts (`resume_state`)."""

    resume: str | None  # what --resume named, "auto" resolved: the run folder, or None (nothing to resume)
    path: Path | None = None  # the checkpoint it continues
    step: int = 0
    position: dict = field(default_factory=lambda: {"epoch": 0, "start_batch": 0})  # the sampler's
    init_origin: dict | None = None  # the pretrained weights the run started from, for `gqn export`
    init: Loaded | None = None  # the --init weights it starts from, at step 0


def resume_state(
    resume: str | None,
    init: str | None,
    run_dir: str | os.PathLike,
    model: GQN,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> Resumed:
    """Where a training run of `model` starts, loaded into `model` and `optimizer`.

    `resume` (--resume: a checkpoint, a run folder, a step number of `run_dir`, or "auto": `run_dir`'s
    last.pt if it has one) continues a checkpoint exactly: its weights, optimizer, RNG states and
    data position. Else `init` (--init: a checkpoint, run folder or pretrained weights) gives the
    weights alone, at step 0 with the optimizer as it is. Else the run starts new. Either must be
    of the model's config."""
    if resume == "auto":
        resume = str(run_dir) if (checkpoint_dir(run_dir) / "last.pt").exists() else None
    if resume is not None:
        path = resolve(resume, run_dir, "--resume")
        state = load_checkpoint(path, map_location=device)
        require(path, state, ("step", "model", "optimizer", "rng", "data"), "it cannot continue a run")
        check_same_model(path, state["model_config"], model.config.to_dict())
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        return Resumed(resume, path, state["step"], state["data"], state.get("init_origin"))
    if init is not None:
        start, loaded = load_model(init, flag="--init")
        grown = check_same_model(loaded.path, start.config.to_dict(), model.config.to_dict(), grow=True)
        missing, _ = model.load_state_dict(start.state_dict(), strict=not grown)
        if any(not k.startswith(("evidence.", "blend.")) for k in missing):
            raise GQNError(f"{loaded.path}: lacks {', '.join(missing)}")  # an older layout of the model
        if grown:
            print(f"{init}: {grown_part(missing)} new ({len(missing)} tensors); the rest is loaded from it")
        return Resumed(None, init_origin=loaded.origin, init=loaded)  # pretrained weights: what made them
    return Resumed(None)


def grown_part(missing: list[str]) -> str:
    """What the tensors `missing` from --init's weights are, in words: the pixel evidence as a whole,
    or the additions (PIXEL_ADDITIONS) switched on in a model that had it."""
    parts = {
        "the spatial pass of the search": [k for k in missing if k.startswith("evidence.spatial.")],
        "the views' depth test": [k for k in missing if k in ("evidence.occlusion", "evidence.margin")],
        "the blend's spatial pass": [k for k in missing if k.startswith("blend.spatial.")],
        "the search's transmittance": [
            k for k in missing if k == "evidence.background" or k.startswith("evidence.occupancy.")
        ],
    }
    if sum(map(len, parts.values())) < len(missing):
        return "the pixel evidence is"
    named = [name for name, keys in parts.items() if keys]
    return " and ".join(named) + (" are" if len(named) > 1 else " is")


def run_settings(resume: str, run_dir: str | os.PathLike) -> dict:
    """The settings of the run that `resume` (--resume, resolved as `resume_state` does against
    `run_dir`) continues, as its checkpoint's train config records them, so that `gqn train
    --resume RUN` goes on as RUN was started; empty for auto with nothing yet to resume. The run
    folder is where the checkpoint was found, not the one it recorded (the run may have moved, or
    been started from another directory); the built-in data is found anew (its cache may be
    elsewhere here)."""
    if resume == "auto" and not (checkpoint_dir(run_dir) / "last.pt").exists():
        return {}
    path = resolve(str(run_dir) if resume == "auto" else resume, run_dir, "--resume")
    settings = dict(load_checkpoint(path).get("train_config") or {})
    if resume == "auto" or resume.isdigit():
        settings["run_dir"] = str(run_dir)
    else:
        settings["run_dir"] = str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)
    if settings.get("data") is not None and is_builtin(settings["data"]):
        settings["data"] = None
    return settings


def describe(path: str | os.PathLike, state: dict) -> Loaded:
    """What a checkpoint's model knows about itself."""
    return Loaded(
        path=str(path),
        step=state["step"],
        sigma=run_sigma(state),
        config=GQNConfig.from_dict(state["model_config"], where=str(path)),
        train_config=state.get("train_config", {}),
        init_origin=state.get("init_origin"),
        dataset=state.get("dataset") or dataset_of(state.get("train_config", {}).get("data")),
    )


def dataset_of(data: str | None) -> str | None:
    """The dataset a --data path names (ROOT/DATASET, a split folder or a file of it): for
    checkpoints written before they recorded it."""
    if not data:
        return None
    path = Path(data)
    path = path.parent if path.suffix == ".tfrecord" else path
    return (path.parent if path.name in SPLITS else path).name


def run_sigma(state: dict) -> float:
    """The pixel sigma of a checkpoint's training at its step: the run's own schedule, or the
    paper's (sigma_at's defaults) for a checkpoint without one."""
    train = state.get("train_config", {})
    keys = ("sigma_start", "sigma_end", "sigma_steps")
    if all(k in train for k in keys):
        return sigma_at(state["step"], *(train[k] for k in keys))
    return sigma_at(state["step"])


# The fields of the pixel stage (gqn/pixels.py): a model without it can start one with it (--init).
PIXEL_FIELDS = (
    "pixel_depths",
    "pixel_channels",
    "pixel_fraction",
    "search_spatial",
    "search_hidden",
    "pixel_visibility",
    "search_views",
    "blend_spatial",
    "search_width",
    "pixel_sampling",
    "search_weighting",
)


# What a model with pixel evidence may have switched on afterwards (--init), each field with its
# value when off: each adds parameters that start as nothing or as a mild prior (the spatial pass
# at zero, the depth test's strength, the background black and a depth's stopping probability low).
PIXEL_ADDITIONS = {
    "search_spatial": 0,
    "pixel_visibility": False,
    "blend_spatial": 0,
    "search_weighting": "softmax",
}

# What adds, removes and reshapes no weight, so --init may set it anew and the weights learn to it:
# the search's loss, where each pixel's depths lie along its ray, and how many there are (unless
# the search's spatial pass is on: its channels are the depths).
REFIT_FIELDS = ("search_width", "pixel_sampling", "pixel_depths")


def refit_fields(config: dict) -> tuple[str, ...]:
    """The REFIT_FIELDS that --init may set anew for a model of `config` with pixel evidence."""
    return tuple(k for k in REFIT_FIELDS if not (k == "pixel_depths" and config.get("search_spatial")))


def check_same_model(path: str | os.PathLike, saved: dict, wanted: dict, grow: bool = False) -> bool:
    """A checkpoint can only continue the model config it was trained with (a field newer than the
    checkpoint counts as its default). With `grow` (--init), a model without pixel evidence may
    also start the same model with it, and one with pixel evidence the same with any of
    PIXEL_ADDITIONS switched on, and any of its `refit_fields` set anew: returns True when there are
    weights new to be trained anew."""
    saved = GQNConfig.from_dict(saved, where=f"{path} (model_config)").to_dict()
    if grow and saved["pixel_depths"] and wanted.get("pixel_depths"):
        saved = {**saved, **{k: wanted[k] for k in refit_fields(saved) if k in wanted}}
    if grow and not saved["pixel_depths"] and wanted["pixel_depths"]:
        without = {k: v for k, v in wanted.items() if k not in PIXEL_FIELDS}
        if without == {k: v for k, v in saved.items() if k not in PIXEL_FIELDS}:
            return True
    if grow and saved["pixel_depths"]:
        switched_on = {k: wanted[k] for k, off in PIXEL_ADDITIONS.items() if saved[k] == off != wanted[k]}
        if switched_on and {**saved, **switched_on} == wanted:
            return True
    if saved != wanted:
        keys = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        diff = ", ".join(f"{k}: {saved.get(k)!r} in checkpoint, {wanted.get(k)!r} asked" for k in keys)
        raise GQNError(f"{path}: trained with another model config ({diff})")
    return False


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


# ----------------------------------------------------------------------------------------------
# Exported weights: NAME.safetensors + NAME.json


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


def read_description(source: str | os.PathLike) -> dict:
    """The NAME.json of "pretrained:NAME" or NAME.safetensors, with "path" (the weights) added."""
    path = weights_path(source)
    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise GQNError(f"{meta_path}: missing (the config that goes with {path.name})") from None
    except ValueError as e:
        raise GQNError(f"{meta_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != WEIGHTS_FORMAT or "model_config" not in meta:
        raise GQNError(f"{meta_path}: not a gqn weights description of format {WEIGHTS_FORMAT}")
    return {**meta, "path": str(path)}


def load_weights(source: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[GQN, Loaded]:
    """A model from "pretrained:NAME" or NAME.safetensors (+ NAME.json beside it), in eval mode,
    and what it knows about itself. Checks the weights' SHA-256 first."""
    from safetensors.torch import load

    meta = read_description(source)
    path, meta_path = Path(meta["path"]), Path(meta["path"]).with_suffix(".json")
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
    config = GQNConfig.from_dict(meta["model_config"], where=str(meta_path))
    check_finite(path, tensors)
    model = GQN(config)
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
    origin = {k: meta[k] for k in ("name", "step", "trained_with")}
    return model, Loaded(str(path), meta["step"], meta["sigma"], config, origin, dataset=meta.get("dataset"))


def save_weights(
    out: str | os.PathLike, name: str, tensors: dict[str, torch.Tensor], meta: dict
) -> tuple[Path, Path]:
    """Write NAME.safetensors and NAME.json (`meta`, with the format, name, gqn version, SHA-256
    and parameter count added) into `out`."""
    from safetensors.torch import save

    data = save(tensors)
    meta = {
        "format": WEIGHTS_FORMAT,
        "name": name,
        "gqn_version": __version__,
        **{k: v for k, v in meta.items() if k != "eval"},
        "sha256": hashlib.sha256(data).hexdigest(),
        "parameters": sum(t.numel() for t in tensors.values()),
        **({"eval": meta["eval"]} if "eval" in meta else {}),
    }
    out = Path(out)
    weights, description = out / f"{name}.safetensors", out / f"{name}.json"
    with atomic_write(weights) as f:
        f.write(data)
    write_json(meta, description)
    return weights, description
