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
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from gqn.checkpoint import (
    check_same_model,
    checkpoint_dir,
    load_model,
    remove_leftovers,
    resolve,
    resume,
    save_checkpoint,
    training_state,
)
from gqn.config import TrainConfig, add_flags, get_config, train_config_from_args, with_cameras
from gqn.data import SceneDataset, make_loader, model_inputs
from gqn.defaults import dataset_path
from gqn.errors import DataError, GQNError
from gqn.files import writable_folder
from gqn.held_out import evaluate_held_out, held_out_batch
from gqn.metrics import bits_per_dim
from gqn.model import GQN
from gqn.runlog import RunLog
from gqn.runtime import StopSignals, agree, autocast, setup_process, spawn, unwrap
from gqn.schedules import lr_at, sigma_at


@dataclass
class Result:
    step: int
    checkpoint: Path | None
    metrics: dict
    stopped_by: str | None = None  # the signal that stopped the run early, if any


def train(cfg: TrainConfig) -> Result:
    # --- set up ---------------------------------------------------------------------------------
    rank, world, device = setup_process(cfg.device)
    lead = rank == 0
    torch.manual_seed(cfg.seed)  # the same on every rank: same weights, same global noise
    if lead:
        writable_folder(cfg.run_dir)  # a folder it cannot write to is said before any work
        removed = remove_leftovers(cfg.run_dir)
        if removed:
            print(f"removed {len(removed)} temporary file(s) of an interrupted save: {removed[0].name} ...")
    cfg.data = str(dataset_path(cfg.data))
    dataset = SceneDataset(cfg.data, split="train", image_size=cfg.image_size, skip_corrupt=cfg.skip_corrupt)
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
    held_out = held_out_batch(cfg.data, cfg) if lead else None

    # --- build ----------------------------------------------------------------------------------
    # The model records the frame size it learned from, so that eval and render feed it the same.
    model_cfg = get_config(cfg.config, image_size=cfg.image_size or dataset.stored_size)
    model_cfg = with_cameras(model_cfg, dataset.dataset_name)
    model = GQN(model_cfg).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr_start, betas=(0.9, 0.999), eps=1e-8)
    step, position = 0, {"epoch": 0, "start_batch": 0}
    origin = None  # what pretrained weights this run started from (--init), for `gqn export`

    # --- resume ---------------------------------------------------------------------------------
    if cfg.resume == "auto":
        cfg.resume = cfg.run_dir if (checkpoint_dir(cfg.run_dir) / "last.pt").exists() else None
    checkpoint = None
    if cfg.resume is not None:
        resumed = resume(resolve(cfg.resume, cfg.run_dir, "--resume"), model, optimizer, device)
        checkpoint, step, position, origin = resumed.path, resumed.step, resumed.position, resumed.init_origin
        if lead:
            print(f"resumed from {checkpoint} at step {step}")
    elif cfg.init is not None:
        start, loaded = load_model(cfg.init, flag="--init")
        origin = loaded.origin  # pretrained weights: what made them
        check_same_model(loaded.path, start.config.to_dict(), model_cfg.to_dict())
        model.load_state_dict(start.state_dict())
        if lead:
            print(f"initialised from {loaded.path} (trained {loaded.step} steps); optimizer new, step 0")
    saved_at = step if checkpoint else None  # the step of the newest checkpoint
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
        )
    if cfg.compile:
        net = torch.compile(net)
    log = RunLog(cfg.run_dir, resume_step=step if cfg.resume else None) if lead else None
    stop = StopSignals()
    bar = progress_bar(cfg, step, lead)
    last_metrics, rate = {}, None
    started = time.monotonic()
    deadline = started + 60 * cfg.max_minutes if cfg.max_minutes > 0 else None
    out_of_time = False
    dims = 3 * dataset.stored_size**2 if cfg.image_size is None else 3 * cfg.image_size**2

    def save() -> Path | None:
        if not lead:
            return None
        state = training_state(
            step, model, optimizer, model_cfg, asdict(cfg), position, device, origin, dataset.dataset_name
        )
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
                noise = torch.randn(
                    model.noise_shape(cfg.batch_size, h, w)
                )  # the global draw: this rank's slice
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
                        "psnr_of_batch_mse": -10 * math.log10(max(values["mse"], 1e-10)),
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

                # --- evaluate --- (also at the end of a run, so that a short run has one)
                out_of_time = deadline is not None and agree(time.monotonic() >= deadline, world, device)
                if (
                    lead
                    and held_out is not None
                    and cfg.eval_every
                    and (step % cfg.eval_every == 0 or step == cfg.max_steps or out_of_time)
                ):
                    evaluate_held_out(
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
                if deadline is None:
                    bar.update(1)
                else:  # the minutes of the time limit, the step in front
                    bar.set_description(f"step {step}", refresh=False)
                    bar.update(min(cfg.max_minutes, (time.monotonic() - started) / 60) - bar.n)

                # --- save ---
                done = step >= cfg.max_steps or stop.received or out_of_time
                if step % cfg.checkpoint_every == 0 or done:
                    checkpoint, saved_at = save() or checkpoint, step
                if done:
                    break
    except DataError as e:  # a corrupt record: keep the steps taken, say where and how to go on
        if step > (saved_at or 0):
            checkpoint = save() or checkpoint
        kept = f"saved {checkpoint}; " if checkpoint else ""
        raise GQNError(
            f"{e} (a scene of the batch of step {step + 1}); {kept}--resume {cfg.run_dir} --skip-corrupt "
            "goes on, each corrupt scene replaced by the next sound one"
        ) from None
    finally:
        loader.close()
        stop.restore()
        bar.close()
        if log is not None:
            log.close(quietly=sys.exc_info()[1] is not None)  # the error that stopped the run is told
    if lead and (stop.received or out_of_time):
        why = stop.received or f"the {cfg.max_minutes:g}-minute limit"
        print(
            f"stopped by {why} at step {step}; checkpoint {checkpoint}; continue with --resume {cfg.run_dir}"
        )
    return Result(step, checkpoint, last_metrics, stop.received)


def progress_bar(cfg: TrainConfig, step: int, lead: bool) -> tqdm:
    """Steps towards --max-steps; for a run that --max-minutes bounds, the minutes, which is what
    it will really do (its steps towards a far --max-steps would promise hundreds of hours)."""
    shown = dict(disable=not lead or None, file=sys.stderr, dynamic_ncols=True)
    if cfg.max_minutes > 0:
        form = "{desc}{percentage:3.0f}%|{bar}| {n:.1f}/{total:g} min [{elapsed}<{remaining}{postfix}]"
        return tqdm(total=cfg.max_minutes, desc=f"step {step}", bar_format=form, **shown)
    return tqdm(total=cfg.max_steps, initial=step, unit="step", **shown)


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
    cfg = train_config_from_args(args)
    get_config(cfg.config)  # an unknown model config is an error before anything starts
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
    if dist.is_initialized():
        dist.destroy_process_group()
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
