"""Training a GQN: `gqn train`, from one CPU to many GPUs, resumable to the bit.

    gqn train --config small --max-steps 2000                      # built-in synthetic data
    gqn train --data data/shepard_metzler_5_parts --config paper --precision bf16
    gqn train --resume runs/gqn                                    # continue where it stopped
    gqn train --init pretrained:shepard_metzler_5_parts --lr-start 1e-4   # fine-tune
    torchrun --nproc-per-node 4 -m gqn train --data ... --config paper

The loop reads top to bottom: set up, build, resume, loop (step, log, evaluate, save), clean up.
Everything random is a function of the seed and the step: the data order (`ViewSampler`), the
noise for z (one global draw per step, each process taking its slice), so a run stopped and
resumed, or spread over N processes, computes what one uninterrupted process would.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from gqn.checkpoint import check_same_model, load_checkpoint, resolve, save_checkpoint
from gqn.data import SceneDataset, make_loader, model_inputs, view_inputs
from gqn.data.table import DATASETS
from gqn.errors import GQNError
from gqn.evaluate import MAX_QUERIES, predict_views, view_metrics
from gqn.metrics import bits_per_dim, psnr
from gqn.model import GQN, GQNConfig, autocast, dataclass_from_dict, get_config
from gqn.runlog import RunLog
from gqn.schedules import lr_at, sigma_at


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
        default="small", metadata={"help": "model: preset (paper, small, tiny) or a .json file"}
    )
    batch_size: int = field(default=36, metadata={"help": "scenes per step, over all processes (paper: 36)"})
    max_context: int = field(default=5, metadata={"help": "context size drawn per batch from 1..this"})
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "resize frames to this size; the model records it for eval and render (default: as stored)"
        },
    )
    max_steps: int = field(
        default=2_000_000, metadata={"help": "stop after this many steps (paper: about 2M)"}
    )
    max_minutes: float = field(
        default=0.0,
        metadata={"help": "also stop, saving, after this many minutes of this invocation (0: no limit)"},
    )
    lr_start: float = field(default=5e-4, metadata={"help": "Adam learning rate at step 0 (paper)"})
    lr_end: float = field(default=5e-5, metadata={"help": "learning rate from --lr-steps on (paper)"})
    lr_steps: int = field(
        default=1_600_000, metadata={"help": "steps of the linear learning-rate decay (paper)"}
    )
    sigma_start: float = field(default=2.0, metadata={"help": "pixel standard deviation at step 0 (paper)"})
    sigma_end: float = field(
        default=0.7, metadata={"help": "pixel standard deviation from --sigma-steps on (paper)"}
    )
    sigma_steps: int = field(
        default=200_000, metadata={"help": "steps of the linear sigma annealing (paper)"}
    )
    deterministic_steps: int = field(
        default=0,
        metadata={
            "help": "a deterministic warm-up: for this many steps the prior-mean prediction is "
            "regressed on the query (KL 0, no inference network), at about half the cost of a step"
        },
    )
    checkpoint_every: int = field(default=1000, metadata={"help": "steps between checkpoints"})
    keep: int = field(default=3, metadata={"help": "step checkpoints kept besides last.pt"})
    eval_every: int = field(
        default=1000, metadata={"help": "steps between evaluations of the held-out batch (0: never)"}
    )
    log_every: int = field(default=10, metadata={"help": "steps between metric records"})
    image_every: int = field(
        default=1000, metadata={"help": "steps between image grids in TensorBoard (0: never)"}
    )
    workers: int = field(default=2, metadata={"help": "DataLoader worker processes per training process"})
    seed: int = field(default=0, metadata={"help": "seeds the weights, the data order and the noise"})
    precision: str = field(
        default="fp32", metadata={"help": "fp32 or bf16 (autocast)", "choices": ["fp32", "bf16"]}
    )
    compile: bool = field(default=False, metadata={"help": "torch.compile the model"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA if present), cpu, cuda"})
    data_parallel: bool = field(default=False, metadata={"help": "one process per GPU on this machine (DDP)"})
    resume: str | None = field(
        default=None,
        metadata={
            "help": "a run folder, a checkpoint file, a step number of --run-dir, or auto (--run-dir's last.pt if any)"
        },
    )
    init: str | None = field(
        default=None,
        metadata={
            "help": "start from these weights (a checkpoint, run folder, pretrained:NAME or .safetensors) "
            "with a new optimizer at step 0: fine-tuning; a resumed run takes its checkpoint's weights"
        },
    )

    @classmethod
    def from_dict(cls, d: dict, where: str = "train config") -> TrainConfig:
        return dataclass_from_dict(cls, d, where)


@dataclass
class Result:
    step: int
    checkpoint: Path | None
    metrics: dict
    stopped_by: str | None = None  # the signal that stopped the run early, if any


# ----------------------------------------------------------------------------------------------
# Set-up helpers


def setup_process(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group when started by torchrun or spawn."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.device == "auto":
        device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    else:
        device = torch.device(cfg.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return rank, world, device


class StopSignals:
    """SIGTERM and SIGINT ask the loop to save and stop after the current step; a second SIGINT
    stops at once."""

    def __init__(self):
        self.received: str | None = None
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def _handle(self, signum, frame):
        if self.received == "SIGINT" and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def eval_batch(path: str | os.PathLike, cfg: TrainConfig) -> dict | None:
    """A fixed held-out batch from the test split (None if there is no test split), and under
    "views" a few held-out scenes with 3 context views and up to 10 query cameras each, for the
    view metrics."""
    try:
        test = SceneDataset(path, split="test", image_size=cfg.image_size)
    except GQNError:
        return None
    size = min(cfg.batch_size, len(test), 16)
    context = min(cfg.max_context, test.views - 1)
    loader = make_loader(test, size, context_size=context, seed=cfg.seed + 1, shuffle=True)
    batch = next(iter(loader))
    k = min(3, test.views - 2)
    rng = np.random.default_rng(cfg.seed + 1)
    specs = [(i, tuple(rng.permutation(test.views)[: k + MAX_QUERIES])) for i in range(min(8, len(test)))]
    batch["views"] = {"context": k, **test.get_views(specs)}
    return batch


def with_cameras(model_cfg: GQNConfig, dataset_name: str) -> GQNConfig:
    """The epipolar representation needs the cameras' field of view and depth bounds: those the
    config does not set come from the dataset's description."""
    if model_cfg.representation != "epipolar":
        return model_cfg
    info = DATASETS.get(dataset_name)
    fill = {
        name: getattr(info, name)
        for name in ("fov", "near", "far")
        if getattr(model_cfg, name) is None and info is not None
    }
    return replace(model_cfg, **fill)


def agree(flag: bool, world: int, device: torch.device) -> bool:
    """True on every process if it is true on any (so all stop at the same step)."""
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def unwrap(model: torch.nn.Module) -> GQN:
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


def picture(context_x, query_x, recon, sample, n: int = 4) -> torch.Tensor:
    """A (3, H', W') grid: rows of [first context view, target, posterior reconstruction, prior sample]."""
    rows = [
        torch.cat([context_x[i, 0], query_x[i], recon[i], sample[i]], 2) for i in range(min(n, len(query_x)))
    ]
    return torch.cat(rows, 1).float().cpu()


# ----------------------------------------------------------------------------------------------
# The loop


def train(cfg: TrainConfig) -> Result:
    # --- set up ---------------------------------------------------------------------------------
    rank, world, device = setup_process(cfg)
    lead = rank == 0
    torch.manual_seed(cfg.seed)  # the same on every rank: same weights, same global noise
    if cfg.data is None:
        from gqn.defaults import default_data

        cfg.data = str(default_data())
    dataset = SceneDataset(cfg.data, split="train", image_size=cfg.image_size)
    if cfg.batch_size % world:
        raise GQNError(f"--batch-size {cfg.batch_size} is not divisible by {world} processes")
    if not 1 <= cfg.max_context < dataset.views:
        raise GQNError(
            f"--max-context {cfg.max_context}: {dataset.dataset_name} has {dataset.views} views, so 1..{dataset.views - 1}"
        )
    if cfg.batch_size > len(dataset):
        raise GQNError(
            f"--batch-size {cfg.batch_size} is more than the {len(dataset)} training scenes in {cfg.data}"
        )
    loader = make_loader(
        dataset,
        cfg.batch_size,
        cfg.max_context,
        seed=cfg.seed,
        workers=cfg.workers,
        rank=rank,
        world_size=world,
    )
    sampler = loader.batch_sampler
    held_out = eval_batch(cfg.data, cfg) if lead else None

    # --- build ----------------------------------------------------------------------------------
    # The model records the frame size it learned from, so that eval and render feed it the same.
    model_cfg = replace(get_config(cfg.config), image_size=cfg.image_size or dataset.stored_size)
    model_cfg = with_cameras(model_cfg, dataset.dataset_name)
    model = GQN(model_cfg).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr_start, betas=(0.9, 0.999), eps=1e-8)
    step, position = 0, {"epoch": 0, "start_batch": 0}
    origin = None  # what pretrained weights this run started from (--init), for `gqn export`

    # --- resume ---------------------------------------------------------------------------------
    if cfg.resume == "auto":
        cfg.resume = cfg.run_dir if (Path(cfg.run_dir) / "checkpoints" / "last.pt").exists() else None
    checkpoint = None
    if cfg.resume is not None:
        path = resolve(cfg.resume, cfg.run_dir)
        state = load_checkpoint(path, map_location=device)
        check_same_model(path, state["model_config"], model_cfg.to_dict())
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, position = state["step"], state["data"]
        origin = state.get("init_origin")
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        checkpoint = path
        if lead:
            print(f"resumed from {path} at step {step}")
    elif cfg.init is not None:
        from gqn.evaluate import load_model

        start, facts = load_model(cfg.init)
        origin = facts.get("origin")  # pretrained weights: what made them
        check_same_model(facts["path"], start.config.to_dict(), model_cfg.to_dict())
        model.load_state_dict(start.state_dict())
        if lead:
            print(f"initialised from {facts['path']} (trained {facts['step']} steps); optimizer new, step 0")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.deterministic_steps > 0,  # the inference network rests then
        )
    if cfg.compile:
        net = torch.compile(net)
    log = RunLog(cfg.run_dir, resume_step=step if cfg.resume else None) if lead else None
    stop = StopSignals()
    bar = tqdm(
        total=cfg.max_steps,
        initial=step,
        unit="step",
        disable=not lead or None,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    last_metrics, rate = {}, None
    deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes > 0 else None
    out_of_time = False
    dims = 3 * dataset.stored_size**2 if cfg.image_size is None else 3 * cfg.image_size**2

    def save() -> Path | None:
        if not lead:
            return None
        rng = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }
        state = {
            "step": step,
            "model_config": model_cfg.to_dict(),
            "train_config": asdict(cfg),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": rng,
            "data": dict(position),
            **({"init_origin": origin} if origin else {}),
        }
        return save_checkpoint(state, cfg.run_dir, keep=cfg.keep)

    # --- loop -----------------------------------------------------------------------------------
    try:
        while step < cfg.max_steps and not stop.received and not out_of_time:
            sampler.load_state_dict(position)
            epoch, first = position["epoch"], position["start_batch"]
            for i, batch in enumerate(loader):
                tick = time.perf_counter()
                lr = lr_at(step, cfg.lr_start, cfg.lr_end, cfg.lr_steps)
                sigma = sigma_at(step, cfg.sigma_start, cfg.sigma_end, cfg.sigma_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                context_x, context_v, query_x, query_v = model_inputs(batch, device)
                b, _, _, h, w = context_x.shape
                noise = torch.randn(model_cfg.L, cfg.batch_size, model_cfg.z_channels, h // 4, w // 4)
                noise = noise[:, rank * b : (rank + 1) * b].to(device)
                with autocast(cfg.precision, device):
                    out = net(
                        context_x,
                        context_v,
                        query_x,
                        query_v,
                        sigma,
                        noise=noise,
                        deterministic=step < cfg.deterministic_steps,
                    )
                optimizer.zero_grad(set_to_none=True)
                out["loss"].backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
                finite = torch.isfinite(out["loss"].detach()) & torch.isfinite(grad_norm)
                if world > 1:
                    flag = finite.float().to(device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
                    finite = flag > 0
                if not finite:
                    kept = f"; the last good checkpoint is {checkpoint}" if checkpoint else ""
                    raise GQNError(
                        f"non-finite loss at step {step + 1} (loss {out['loss'].item()}, grad norm {grad_norm.item()}): "
                        f"try a lower --lr-start or --precision fp32{kept}"
                    )
                optimizer.step()
                step += 1
                consumed = first + i + 1
                position = (
                    {"epoch": epoch + 1, "start_batch": 0}
                    if consumed == len(sampler)
                    else {"epoch": epoch, "start_batch": consumed}
                )
                seconds = time.perf_counter() - tick
                rate = (
                    cfg.batch_size / seconds if rate is None else 0.9 * rate + 0.1 * cfg.batch_size / seconds
                )

                # --- log ---
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    values = {k: out[k].detach().float() for k in ("loss", "nll", "kl", "mse")}
                    if world > 1:
                        for v in values.values():
                            dist.all_reduce(v, op=dist.ReduceOp.AVG)
                    values = {k: v.item() for k, v in values.items()}
                    last_metrics = {
                        **values,
                        "psnr": -10 * math.log10(max(values["mse"], 1e-10)),
                        "bits_per_dim": bits_per_dim(values["loss"], dims),
                        "sigma": sigma,
                        "lr": lr,
                        "grad_norm": grad_norm.item(),
                        "scenes_per_s": rate,
                        **{
                            f"kl_step_{i:02d}": v
                            for i, v in enumerate(out["kl_steps"].detach().float().tolist())
                        },
                    }
                    if lead:
                        log.scalars(step, "train", last_metrics)
                        bar.set_postfix(
                            elbo=f"{values['loss']:.1f}",
                            kl=f"{values['kl']:.1f}",
                            mse=f"{values['mse']:.4f}",
                            scenes_s=f"{rate:.1f}",
                        )

                # --- evaluate ---
                if (
                    lead
                    and held_out is not None
                    and cfg.eval_every
                    and (step % cfg.eval_every == 0 or step == cfg.max_steps)
                ):
                    evaluate(
                        unwrap(net),
                        held_out,
                        sigma,
                        step,
                        log,
                        device,
                        cfg,
                        dims,
                        images=cfg.image_every and step % cfg.image_every == 0,
                    )
                bar.update(1)

                # --- save ---
                out_of_time = deadline is not None and agree(time.monotonic() >= deadline, world, device)
                done = step >= cfg.max_steps or stop.received or out_of_time
                if step % cfg.checkpoint_every == 0 or done:
                    checkpoint = save() or checkpoint
                if done:
                    break
    finally:
        stop.restore()
        bar.close()
        if log is not None:
            log.close()
    if lead and (stop.received or out_of_time):
        why = stop.received or f"the {cfg.max_minutes:g}-minute limit"
        print(
            f"stopped by {why} at step {step}; checkpoint {checkpoint}; continue with --resume {cfg.run_dir}"
        )
    return Result(step, checkpoint, last_metrics, stop.received)


@torch.no_grad()
def evaluate(
    model: GQN,
    batch: dict,
    sigma: float,
    step: int,
    log: RunLog,
    device,
    cfg: TrainConfig,
    dims: int,
    images: bool,
) -> dict:
    """ELBO terms through the posterior, PSNR of the prior-mean prediction, and the view metrics
    (view gain and identification, `gqn.evaluate`) of the prior mean and of the nearest-view
    baseline, on the held-out batch.

    Its noise comes from its own generator, so evaluating never changes the training's random stream.
    """
    context_x, context_v, query_x, query_v = model_inputs(batch, device)
    b, _, _, h, w = context_x.shape
    noise = torch.randn(model.noise_shape(b, h, w), generator=torch.Generator().manual_seed(cfg.seed)).to(
        device
    )
    with autocast(cfg.precision, device):
        out = model(context_x, context_v, query_x, query_v, sigma, noise=noise)
        prior_mean = model.sample(context_x, context_v, query_v, use_mean=True)
    values = {k: out[k].float().item() for k in ("loss", "nll", "kl", "mse")}
    values["psnr"] = psnr(out["mean"].clamp(0, 1), query_x).mean().item()
    values["prior_mean_psnr"] = psnr(prior_mean, query_x).mean().item()
    values["bits_per_dim"] = bits_per_dim(values["loss"], dims)
    views = batch["views"]
    x, v = view_inputs(views, device)
    with autocast(cfg.precision, device):
        predictions = predict_views(model, x, v, views["cameras"], views["context"])
    scores = view_metrics(predictions, x[:, views["context"] :])
    for method, name in (("prior_mean", "view"), ("nearest_view", "nearest_view")):
        values[f"{name}_gain_db"] = float(np.mean(scores[method]["gain_db"]))
        values[f"{name}_identification"] = float(np.mean(scores[method]["identification"]))
    log.scalars(step, "eval", values)
    if images:
        sample = model.sample(context_x, context_v, query_v, noise=noise)
        log.image(
            step,
            "context_target_posterior_prior",
            picture(context_x, query_x, out["mean"].clamp(0, 1), sample),
        )
    return values


# ----------------------------------------------------------------------------------------------
# Command line: flags derived from TrainConfig's fields


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a GQN with the paper's schedules; checkpoints, resume, TensorBoard, DDP",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # each help states its default
    )
    for f in fields(TrainConfig):
        names = [f"--{f.name.replace('_', '-')}"] + ([f"--{f.name}"] if "_" in f.name else [])
        kind = f.type.replace(" | None", "")
        if kind == "bool":
            p.add_argument(*names, action="store_true", default=None, help=f.metadata["help"])
        else:
            typ = {"int": int, "float": float, "str": str}[kind]
            p.add_argument(
                *names,
                type=typ,
                default=None,
                choices=f.metadata.get("choices"),
                metavar=f.name.upper(),
                help=f.metadata["help"] + ("" if f.default is None else f" (default: {f.default})"),
            )
    p.set_defaults(run=run)


def config_from_args(args) -> TrainConfig:
    """Defaults, then the "train" section of a --config JSON file, then the flags given."""
    import json

    base = {}
    if args.config and args.config.endswith(".json"):
        try:
            with open(args.config) as fh:
                base = json.load(fh).get("train", {})
        except (OSError, ValueError) as e:
            raise GQNError(f"{args.config}: cannot read config: {e}") from None
    cfg = TrainConfig.from_dict(base, where=f"{args.config} (train)")
    for f in fields(TrainConfig):
        value = getattr(args, f.name)
        if value is not None:
            setattr(cfg, f.name, value)
    return cfg


def _spawned(local_rank: int, cfg: TrainConfig, world: int, port: int) -> None:
    os.environ.update(
        RANK=str(local_rank),
        LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    train(cfg)


def run(args) -> int:
    cfg = config_from_args(args)
    get_config(cfg.config)  # an unknown model config is an error before anything starts
    if cfg.data_parallel and "WORLD_SIZE" not in os.environ:
        gpus = torch.cuda.device_count()
        if gpus == 0:
            raise GQNError(
                "--data_parallel spawns one process per GPU and there is none; "
                "for several CPU processes use: torchrun --nproc-per-node N -m gqn train ..."
            )
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        torch.multiprocessing.spawn(_spawned, args=(cfg, gpus, port), nprocs=gpus)
        return 0
    result = train(cfg)
    if dist.is_initialized():
        dist.destroy_process_group()
    if result.stopped_by:
        return 128 + signal.Signals[result.stopped_by].value
    if int(os.environ.get("RANK", "0")) == 0:
        m = result.metrics
        summary = f"step {result.step}: checkpoint {result.checkpoint}"
        if m:
            summary += f"; loss {m['loss']:.1f}, nll {m['nll']:.1f}, kl {m['kl']:.2f}, mse {m['mse']:.5f}, psnr {m['psnr']:.2f} dB"
        print(summary)
    return 0
