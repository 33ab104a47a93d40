"""Batches as the paper and DeepMind's reader form them.

Shapes: B batch, K context views, H x W frames.

Per batch a context size K is drawn uniformly from 1..max_context (or fixed, for evaluation); per
scene K + 1 distinct views are drawn, the first K are the context and the last the query. All the
randomness lives in `ViewSampler`, in the main process, as a pure function of (seed, epoch,
batch): the batches are the same whatever the number of DataLoader workers, and a run can resume
at any batch without replaying the ones before.

    loader = make_loader(SceneDataset(path), batch_size=36, max_context=5, seed=0, workers=2)
    for batch in loader:
        context_x, context_v, query_x, query_v = model_inputs(batch)
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import numpy as np
import torch

from gqn.cameras import viewpoints
from gqn.data.dataset import SceneDataset
from gqn.errors import DataError, GQNError


def view_inputs(
    batch: dict[str, torch.Tensor], device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's views as the model takes them: x (B, V, 3, H, W) in [0, 1] and v (B, V, 7).
    The uint8 frames travel; floats are made on `device`. v is `gqn.cameras.viewpoints`."""
    frames = batch["frames"].to(device, non_blocking=True)
    x = frames.permute(0, 1, 4, 2, 3).float().div_(255.0)
    v = viewpoints(batch["cameras"].to(device, non_blocking=True).float())
    return x, v


def model_inputs(
    batch: dict[str, torch.Tensor], device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a batch into context_x (B, K, 3, H, W) in [0, 1], context_v (B, K, 7),
    query_x (B, 3, H, W) and query_v (B, 7): the last view is the query."""
    x, v = view_inputs(batch, device)
    return x[:, :-1], v[:, :-1], x[:, -1], v[:, -1]


class ViewSampler(torch.utils.data.Sampler):
    """Yields batches of (scene index, view indices) for a `SceneDataset`.

    One epoch visits every scene once in a random order (the last partial batch is dropped).
    `batch_size` is the global batch; under data parallelism rank r of W takes its slice
    [r * B/W, (r + 1) * B/W), so all ranks together see exactly the batch one process would.
    context_size fixes K (evaluation); otherwise K ~ U{1..max_context} per batch.
    """

    def __init__(
        self,
        num_scenes: int,
        views_per_scene: int,
        batch_size: int,
        max_context: int = 5,
        context_size: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        # The checks of `gqn train`'s flags, made once, here.
        if not 1 <= (context_size or max_context) < views_per_scene:
            raise GQNError(
                f"context size (--max-context) must be 1..{views_per_scene - 1} for {views_per_scene} "
                f"views per scene, got {context_size or max_context}"
            )
        if batch_size % world_size:
            raise GQNError(f"--batch-size {batch_size} is not divisible by {world_size} processes")
        if batch_size > num_scenes:
            raise GQNError(f"--batch-size {batch_size} is more than the {num_scenes} scenes of the split")
        self.num_scenes, self.views = num_scenes, views_per_scene
        self.batch_size, self.max_context, self.context_size = batch_size, max_context, context_size
        self.seed, self.shuffle, self.rank, self.world_size = seed, shuffle, rank, world_size
        self.epoch = 0
        self.start_batch = 0  # where the next iteration begins in this epoch (for resuming)

    def __len__(self) -> int:
        return self.num_scenes // self.batch_size

    def batch(self, epoch: int, b: int) -> list[tuple[int, tuple[int, ...]]]:
        """This rank's part of batch b of an epoch: [(scene, (context views..., query view))]."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.num_scenes)
        else:
            order = np.arange(self.num_scenes)
        scenes = order[b * self.batch_size : (b + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, epoch, b, 1])
        k = self.context_size or int(rng.integers(1, self.max_context + 1))
        views = np.argsort(rng.random((len(scenes), self.views)), axis=1)[:, : k + 1]
        per_rank = self.batch_size // self.world_size
        lo = self.rank * per_rank
        return [
            (int(s), tuple(int(x) for x in v))
            for s, v in zip(scenes[lo : lo + per_rank], views[lo : lo + per_rank])
        ]

    def __iter__(self) -> Iterator[list[tuple[int, tuple[int, ...]]]]:
        epoch, start = self.epoch, self.start_batch
        for b in range(start, len(self)):
            self.start_batch = b + 1
            yield self.batch(epoch, b)
        self.epoch, self.start_batch = epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        """Where the next batch comes from; note a DataLoader with workers reads ahead of use."""
        return {"epoch": self.epoch, "start_batch": self.start_batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.start_batch = int(state["epoch"]), int(state["start_batch"])


def _identity(batch):
    return batch


class _Reading(torch.utils.data.Dataset):
    """The scenes as a loader reads them: a corrupt record's DataError comes back as the batch,
    for `Loader` to raise as itself (torch re-raises a worker's error as a RuntimeError holding a
    traceback, which names neither file nor offset in a line a person can act on)."""

    def __init__(self, scenes: SceneDataset):
        self.scenes = scenes

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitems__(self, specs) -> dict[str, torch.Tensor] | DataError:
        try:
            return self.scenes.get_views(specs)
        except DataError as e:
            return e


class Loader(torch.utils.data.DataLoader):
    """A DataLoader that raises a corrupt record's DataError in the process that iterates it,
    whichever process read the record, and whose workers `close` stops."""

    def __iter__(self):
        for batch in super().__iter__():
            if isinstance(batch, DataError):
                self.close()
                raise batch
            yield batch

    def close(self) -> None:
        """Stop the worker processes now; iterating again starts new ones. Workers ignore SIGTERM,
        so a process that exits on an error while its loader lives on (held by the error's
        traceback) would wait for them at exit for ever."""
        if self._iterator is not None:  # persistent workers: torch keeps their iterator here
            self._iterator._shutdown_workers()
            self._iterator = None


def _leave_stopping_to_the_main_process(worker_id: int) -> None:
    """Workers ignore SIGTERM and SIGINT: a scheduler or `kill` that signals every process of a run
    must reach the main process, which saves a checkpoint and stops; a worker that died first
    would crash it instead. Workers still exit when the main process does."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(
    dataset: SceneDataset,
    batch_size: int,
    max_context: int = 5,
    context_size: int | None = None,
    seed: int = 0,
    workers: int = 0,
    shuffle: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> torch.utils.data.DataLoader:
    """A DataLoader of batch dicts ({"frames", "cameras"}) from a `ViewSampler` over `dataset`.

    Iterating it runs one epoch; iterate again for the next. Workers are persistent, so each keeps
    its open files across epochs.
    """
    sampler = ViewSampler(
        len(dataset),
        dataset.views,
        batch_size,
        max_context=max_context,
        context_size=context_size,
        seed=seed,
        shuffle=shuffle,
        rank=rank,
        world_size=world_size,
    )
    return Loader(
        _Reading(dataset),
        batch_sampler=sampler,
        collate_fn=_identity,  # the dataset's get_views (DataLoader calls it __getitems__) stacks it
        num_workers=workers,
        worker_init_fn=_leave_stopping_to_the_main_process,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        # Its own generator: otherwise each new iterator draws a seed from torch's global RNG,
        # and a resumed run's noise would drift from an uninterrupted one's.
        generator=torch.Generator().manual_seed(seed),
    )
