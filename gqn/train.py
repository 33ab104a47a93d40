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
import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from gqn.checkpoint import remove_leftovers, resume_state, run_settings, save_checkpoint, training_state
from gqn.config import TrainConfig, add_flags, model_config, run_dir_of, train_config_from_args, with_cameras
from gqn.data import SceneDataset, make_loader, model_inputs
from gqn.defaults import dataset_path
from gqn.errors import DataError, GQNError
from gqn.held_out import evaluate_held_out, held_out_batch
from gqn.lock import claim
from gqn.metrics import bits_per_dim
from gqn.model import GQN
from gqn.runlog import RunLog
from gqn.runtime import StopSignals, agree, autocast, leave_group, setup_process, spawn, unwrap, wrap
from gqn.schedules import lr_at, sigma_at


@dataclass
class Run:
    """What the loop carries from one step to the next, and what `train` returns."""

    step: int  # optimizer steps taken
    position: dict  # the sampler's: epoch and batch within it, where the next step's batch is
    checkpoint: Path | None  # the newest checkpoint: resumed from, or saved (rank 0)
    origin: dict | None  # the pretrained weights this run started from (--init), for `gqn export`
    saved_at: int | None = None  # the step of the newest checkpoint
    metrics: dict = field(default_factory=dict)  # of the last logged step
    rate: float | None = None  # scenes per second, smoothed
    out_of_time: bool = False  # --max-minutes have passed (on any rank)
    stopped_by: str | None = None  # the signal that stopped the run early, if any

    def advance(self, batches: int, scenes: int, seconds: float) -> None:
        """Count a step that took the next of the epoch's `batches` batches: `scenes` in `seconds`."""
        self.step += 1
        epochs, batch = divmod(self.position["start_batch"] + 1, batches)  # an epoch's last: the next's first
        self.position = {"epoch": self.position["epoch"] + epochs, "start_batch": batch}
        self.rate = scenes / seconds if self.rate is None else 0.9 * self.rate + 0.1 * scenes / seconds


def train(cfg: TrainConfig) -> Run:
    # --- set up ---------------------------------------------------------------------------------
    rank, world, device = setup_process(cfg.device)
    lead = rank == 0
    torch.manual_seed(cfg.seed)  # the same on every rank: same weights, same global noise
    with claim_run_dir(cfg.run_dir) if lead else contextlib.nullcontext():  # its one writer: rank 0
        dataset, loader = open_data(cfg, rank, world)
        held_out = held_out_batch(cfg.data, cfg) if lead else None  # evaluated on rank 0 alone
        dims = 3 * (cfg.image_size or dataset.stored_size) ** 2  # of a frame, for bits per dimension

        # --- build, resume ----------------------------------------------------------------------
        model, optimizer = build(cfg, dataset, device)
        run = resume_or_init(cfg, model, optimizer, device, lead)
        net = wrap(model, world, device, cfg.compile)
        log = RunLog(cfg.run_dir, resume_step=run.step if run.checkpoint else None) if lead else None
        stop, bar = StopSignals(), progress_bar(cfg, run.step, lead)
        started = time.monotonic()

        # --- loop: step, log, evaluate, save ----------------------------------------------------
        try:
            while run.step < cfg.max_steps and not stop.received and not run.out_of_time:
                loader.batch_sampler.load_state_dict(run.position)
                for batch in loader:
                    tick = time.perf_counter()
                    out = take_step(net, optimizer, batch, cfg, run, rank, world, device)
                    run.advance(len(loader.batch_sampler), cfg.batch_size, time.perf_counter() - tick)
                    log_step(cfg, run, out, dims, world, log, bar)
                    over = time.monotonic() - started >= 60 * cfg.max_minutes  # then all stop at this step
                    run.out_of_time = cfg.max_minutes > 0 and agree(over, world, device)
                    log_held_out(cfg, run, net, held_out, out["sigma"], log, device, dims)
                    advance_bar(bar, cfg, run.step, started)
                    done = run.step >= cfg.max_steps or stop.received or run.out_of_time
                    if lead and (run.step % cfg.checkpoint_every == 0 or done):
                        save(cfg, run, model, optimizer, device, dataset.dataset_name)
                    if done:
                        break
        except DataError as e:  # a corrupt record: keep the steps taken, say where and how to go on
            if lead and run.step > (run.saved_at or 0):
                save(cfg, run, model, optimizer, device, dataset.dataset_name)
            kept = f"saved {run.checkpoint}; " if run.checkpoint else ""
            raise GQNError(
                f"{e} (a scene of the batch of step {run.step + 1}); {kept}--resume {cfg.run_dir} --skip-corrupt "
                "goes on, each corrupt scene replaced by the next sound one"
            ) from None
        finally:
            loader.close()
            stop.restore()
            bar.close()
            if log is not None:
                log.close(quietly=sys.exc_info()[1] is not None)  # the error that stopped the run is told
    if lead and (stop.received or run.out_of_time):
        why = stop.received or f"the {cfg.max_minutes:g}-minute limit"
        print(
            f"stopped by {why} at step {run.step}; checkpoint {run.checkpoint}; continue with --resume {cfg.run_dir}"
        )
    run.stopped_by = stop.received
    return run


@contextlib.contextmanager
def claim_run_dir(run_dir: str) -> Iterator[None]:
    """The run folder, this run's alone while it runs (`gqn.lock`): a second writer, and a folder
    it cannot write to, are said before any work. The temporary files of saves that were killed
    before their rename are removed."""
    with claim(run_dir):
        removed = remove_leftovers(run_dir)
        if removed:
            print(f"removed {len(removed)} temporary file(s) of an interrupted save: {removed[0].name} ...")
        yield


def open_data(cfg: TrainConfig, rank: int, world: int) -> tuple[SceneDataset, torch.utils.data.DataLoader]:
    """The training split of --data and this rank's loader of it (`ViewSampler`'s order)."""
    cfg.data = str(dataset_path(cfg.data))
    dataset = SceneDataset(cfg.data, split="train", image_size=cfg.image_size, skip_corrupt=cfg.skip_corrupt)
    loading = dict(seed=cfg.seed, workers=cfg.workers, rank=rank, world_size=world)
    return dataset, make_loader(dataset, cfg.batch_size, cfg.max_context, **loading)


def build(cfg: TrainConfig, dataset: SceneDataset, device: torch.device) -> tuple[GQN, torch.optim.Optimizer]:
    """The model of --config for the data, and its optimizer. The model records the frame size it
    learned from, so that eval and render feed it the same."""
    model_cfg = model_config(cfg, dataset.stored_size)
    model_cfg = with_cameras(model_cfg, dataset.dataset_name)
    model = GQN(model_cfg).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr_start, betas=(0.9, 0.999), eps=1e-8)
    return model, optimizer


def resume_or_init(cfg: TrainConfig, model: GQN, optimizer, device: torch.device, lead: bool) -> Run:
    """The run at its first step: a checkpoint's (--resume), or --init's weights at step 0, or new."""
    start = resume_state(cfg.resume, cfg.init, cfg.run_dir, model, optimizer, device)
    cfg.resume = start.resume  # "auto" resolved: the checkpoint's train_config says what it was
    if lead and start.path is not None:
        print(f"resumed from {start.path} at step {start.step}")
    elif lead and start.init is not None:
        print(f"initialised from {start.init.path} (trained {start.init.step} steps); optimizer new, step 0")
    return Run(start.step, start.position, start.path, start.init_origin, start.step if start.path else None)


def take_step(net, optimizer, batch: dict, cfg: TrainConfig, run: Run, rank: int, world: int, device) -> dict:
    """One optimizer step after `run.step` steps, at the schedules' lr and sigma, with this rank's
    slice of the step's global noise; the model's outputs, with "grad_norm", "lr" and "sigma". A
    non-finite loss or gradient on any rank is an error naming the step and the last checkpoint."""
    model = unwrap(net)
    lr = lr_at(run.step, cfg.lr_start, cfg.lr_end, cfg.lr_steps)
    sigma = sigma_at(run.step, cfg.sigma_start, cfg.sigma_end, cfg.sigma_steps)
    for group in optimizer.param_groups:
        group["lr"] = lr
    context_x, context_v, query_x, query_v = model_inputs(batch, device)
    b, _, _, h, w = context_x.shape
    noise = torch.randn(model.noise_shape(cfg.batch_size, h, w))  # the global draw: this rank's slice
    noise = noise[:, rank * b : (rank + 1) * b].to(device)
    deterministic = run.step < cfg.deterministic_steps
    with autocast(cfg.precision, device):
        out = net(context_x, context_v, query_x, query_v, sigma, noise=noise, deterministic=deterministic)
    optimizer.zero_grad(set_to_none=True)
    out["objective"].backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
    finite = torch.isfinite(out["objective"].detach()) & torch.isfinite(out["loss"].detach())
    finite = finite & torch.isfinite(grad_norm)
    if agree(not finite, world, device):
        kept = f"; the last good checkpoint is {run.checkpoint}" if run.checkpoint else ""
        raise GQNError(
            f"non-finite loss at step {run.step + 1} (loss {out['loss'].item()}, objective {out['objective'].item()}, grad norm {grad_norm.item()}): "
            f"try a lower --lr-start or --precision fp32{kept}"
        )
    optimizer.step()
    return {**out, "grad_norm": grad_norm, "lr": lr, "sigma": sigma}


def log_step(cfg: TrainConfig, run: Run, out: dict, dims: int, world: int, log: RunLog | None, bar) -> None:
    """Every --log-every steps and the last: the ELBO terms (averaged over the processes), the PSNR
    of the batch MSE, bits per dimension, the schedules, the gradient norm, the speed and the KL of
    each generation step, into `run.metrics`; on rank 0 (`log`) into the records and beside the bar."""
    if run.step % cfg.log_every and run.step != cfg.max_steps:
        return
    values = {k: out[k].detach().float() for k in ("loss", "nll", "kl", "mse", "search_nll")}
    if world > 1:
        for v in values.values():
            dist.all_reduce(v, op=dist.ReduceOp.AVG)
    m = run.metrics = {
        **{k: v.item() for k, v in values.items()},
        "psnr_of_batch_mse": -10 * math.log10(max(values["mse"].item(), 1e-10)),
        "bits_per_dim": bits_per_dim(values["loss"].item(), dims),
        "sigma": out["sigma"],
        "lr": out["lr"],
        "grad_norm": out["grad_norm"].item(),
        "scenes_per_s": run.rate,
        **{f"kl_step_{i:02d}": v for i, v in enumerate(out["kl_steps"].detach().float().tolist())},
    }
    if log is not None:
        log.scalars(run.step, "train", m)
        bar.set_postfix(
            elbo=f"{m['loss']:.1f}", kl=f"{m['kl']:.1f}", mse=f"{m['mse']:.4f}", scenes_s=f"{run.rate:.1f}"
        )


def log_held_out(cfg: TrainConfig, run: Run, net, held_out, sigma: float, log, device, dims: int) -> None:
    """The held-out evaluation (rank 0, of data with a test split), every --eval-every steps and at
    the end of the run, so that a short run has one; its image grid every --image-every steps."""
    end = run.step == cfg.max_steps or run.out_of_time
    if held_out is not None and cfg.eval_every and (run.step % cfg.eval_every == 0 or end):
        images = cfg.image_every and run.step % cfg.image_every == 0
        evaluate_held_out(unwrap(net), held_out, sigma, run.step, log, device, cfg, dims, images=images)


def save(cfg: TrainConfig, run: Run, model: GQN, optimizer, device: torch.device, dataset: str) -> None:
    """The checkpoint of the step just taken (rank 0), everything that continues the run exactly."""
    state = training_state(
        run.step, model, optimizer, model.config, asdict(cfg), run.position, device, run.origin, dataset
    )
    run.checkpoint, run.saved_at = save_checkpoint(state, cfg.run_dir, keep=cfg.keep), run.step


def progress_bar(cfg: TrainConfig, step: int, lead: bool) -> tqdm:
    """Steps towards --max-steps; for a run that --max-minutes bounds, the minutes, which is what
    it will really do (its steps towards a far --max-steps would promise hundreds of hours)."""
    shown = dict(disable=not lead or None, file=sys.stderr, dynamic_ncols=True)
    if cfg.max_minutes > 0:
        form = "{desc}{percentage:3.0f}%|{bar}| {n:.1f}/{total:g} min [{elapsed}<{remaining}{postfix}]"
        return tqdm(total=cfg.max_minutes, desc=f"step {step}", bar_format=form, **shown)
    return tqdm(total=cfg.max_steps, initial=step, unit="step", **shown)


def advance_bar(bar: tqdm, cfg: TrainConfig, step: int, started: float) -> None:
    """A step further; for a run that --max-minutes bounds, the minutes since `started`, the step in front."""
    if cfg.max_minutes > 0:
        bar.set_description(f"step {step}", refresh=False)
        bar.update(min(cfg.max_minutes, (time.monotonic() - started) / 60) - bar.n)
    else:
        bar.update(1)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a GQN with the paper's schedules; checkpoints, resume, TensorBoard, DDP",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # each flag's help states its default
    )
    add_flags(p)  # one per TrainConfig field
    p.set_defaults(run=run)


def run(args) -> int:
    cfg = train_config_from_args(args, args.resume and run_settings(args.resume, run_dir_of(args)))
    model_config(cfg)  # an unknown model config, or a frame size it cannot take, before anything starts
    if cfg.data_parallel and "WORLD_SIZE" not in os.environ:
        gpus = torch.cuda.device_count()
        if gpus == 0:
            raise GQNError(
                "--data-parallel spawns one process per GPU and there is none; "
                "for several CPU processes use: torchrun --nproc-per-node N -m gqn train ..."
            )
        spawn(train, cfg, gpus)
        return 0
    result = train(cfg)
    leave_group()
    if result.stopped_by:
        return 128 + signal.Signals[result.stopped_by].value
    if int(os.environ.get("RANK", "0")) == 0:
        m = result.metrics
        summary = f"step {result.step}: checkpoint {result.checkpoint}"
        if m:
            summary += (
                f"; loss {m['loss']:.1f}, nll {m['nll']:.1f}, kl {m['kl']:.2f}, mse {m['mse']:.5f}, "
                f"psnr of the batch MSE {m['psnr_of_batch_mse']:.2f} dB"
            )
        print(summary)
    return 0
