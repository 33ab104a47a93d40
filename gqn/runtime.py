"""Where and how the training loop runs: the device and process group (DDP), bf16 autocast, and
the signals that ask it to stop.

    rank, world, device = setup_process("auto")     # joins the group under torchrun or spawn
    with autocast("bf16", device): ...
    spawn(train, cfg, gpus)                          # --data-parallel: one process per GPU
    net = wrap(model, world, device, compile=False)  # DDP across processes; unwrap(net) is model

A process started by `torchrun` (or by `spawn`) finds its rank and world size in the environment.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket

import torch
import torch.distributed as dist

from gqn.allocator import keep_freed_memory
from gqn.errors import GQNError


def setup_process(device: str = "auto") -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group when started by torchrun or spawn."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        where = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    else:
        where = torch.device(device)
    if where.type == "cuda" and (where.index or 0) >= torch.cuda.device_count():
        found = (
            f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else "no CUDA device"
        )
        raise GQNError(f"--device {device}: torch sees {found} here; use --device cpu, or auto")
    if where.type == "cuda" and where.index is None:
        where = torch.device("cuda", local)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if where.type == "cuda" else "gloo")
    if where.type == "cuda":
        torch.cuda.set_device(where)
    return rank, world, where


def spawn(fn, arg, processes: int) -> None:
    """Run fn(arg) in `processes` local processes that form one group (one per GPU)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_spawned, args=(fn, arg, processes, port), nprocs=processes)


def _spawned(local_rank: int, fn, arg, world: int, port: int) -> None:
    os.environ.update(
        RANK=str(local_rank),
        LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    keep_freed_memory()  # a fresh interpreter: as gqn's console script does
    fn(arg)
    leave_group()


def leave_group() -> None:
    """Leave the process group of a run that ended well, all processes together: the others wait
    at a barrier while rank 0 writes its last checkpoint, and DDP's hold on the group (its reducer
    sits in reference cycles) is collected before the group is destroyed, not at interpreter exit.
    A process that left alone and early aborted about 1 run in 40 of two gloo processes, in gloo's
    threads ("terminate called without an active exception"), failing a run that had finished."""
    if not dist.is_initialized():
        return
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def agree(flag: bool, world: int, device: torch.device) -> bool:
    """True on every process if it is true on any (so all stop at the same step)."""
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def wrap(model: torch.nn.Module, world: int, device: torch.device, compile: bool = False) -> torch.nn.Module:
    """The model as a training step calls it: in DistributedDataParallel across processes, and
    torch.compiled if asked; `unwrap` gives the model back."""
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return torch.compile(model) if compile else model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model itself, inside DistributedDataParallel and torch.compile."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str = "cpu"):
    """`fp32` (nothing) or `bf16` (torch.autocast: convolutions in bfloat16, losses in float32)."""
    if precision == "fp32":
        yield
    elif precision == "bf16":
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            yield
    else:
        raise GQNError(f"precision {precision!r} is not fp32 or bf16")


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
