"""The random-access dataset, its index cache, and batches as the paper forms them."""

import math
import os

import numpy as np
import pytest
import torch

import gqn.data.scenes
from gqn.data import SceneDataset, ViewSampler, make_loader, model_inputs, read_scenes, viewpoints
from gqn.data.index import _index_path, record_index
from gqn.errors import GQNError


def test_dataset_reads_scenes_in_file_order(dataset_dir):
    ds = SceneDataset(dataset_dir, split="train")
    assert len(ds) == 12 and ds.views == 15 and ds.stored_size == 64
    expected = [s for f in sorted((dataset_dir / "train").iterdir()) for s in read_scenes(f)]
    for i in (0, 5, 11):
        np.testing.assert_array_equal(ds[i].frames, expected[i].frames)
        np.testing.assert_array_equal(ds[i].cameras, expected[i].cameras)


def test_only_the_requested_views_are_decoded(dataset_dir, monkeypatch):
    ds = SceneDataset(dataset_dir)
    calls = []
    real = gqn.data.scenes.decode_jpeg
    monkeypatch.setattr(gqn.data.scenes, "decode_jpeg", lambda b: calls.append(1) or real(b))
    scene = ds[(3, (14, 2, 7))]
    assert len(calls) == 3 and scene.frames.shape == (3, 64, 64, 3)
    np.testing.assert_array_equal(scene.frames, ds[3].frames[[14, 2, 7]])
    np.testing.assert_array_equal(scene.cameras, ds[3].cameras[[14, 2, 7]])


def test_index_is_cached_and_rebuilt_when_the_file_changes(dataset_dir):
    path = str(dataset_dir / "train" / "1-of-3.tfrecord")
    index = record_index(path)
    cached = _index_path(path)
    assert os.path.exists(cached) and index.shape == (4, 2)
    np.testing.assert_array_equal(np.load(cached, allow_pickle=False)[1:], index)
    # A cached index is used as is: mark it and see the mark come back.
    table = np.load(cached)
    table[1, 1] = 12345
    np.save(cached, table)
    assert record_index(path)[0, 1] == 12345
    # Appending a record changes size and mtime: the index is rebuilt.
    with open(path, "ab") as f:
        f.write(open(path, "rb").read()[: 16 + int(index[0, 1])])
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1))
    again = record_index(path)
    assert again.shape == (5, 2) and again[0, 1] == index[0, 1]


def test_resize(dataset_dir):
    ds = SceneDataset(dataset_dir, image_size=32)
    scene = ds[0]
    assert scene.frames.shape == (15, 32, 32, 3)
    full = SceneDataset(dataset_dir)[0].frames.astype(np.float32)
    area = full.reshape(15, 32, 2, 32, 2, 3).mean((2, 4))
    assert np.abs(scene.frames - area).max() <= 0.5 + 1e-6  # area averaging, then rounding
    batch = ds.get_views([(0, (0, 1)), (1, (2, 3))])
    assert batch["frames"].shape == (2, 2, 32, 32, 3)


def test_viewpoint_transform_known_values():
    cameras = torch.tensor([[1.0, 2.0, 3.0, math.pi / 2, -math.pi / 6]])
    v = viewpoints(cameras)
    expected = torch.tensor([[1.0, 2.0, 3.0, 1.0, 0.0, -0.5, math.sqrt(3) / 2]])
    torch.testing.assert_close(v, expected, atol=1e-6, rtol=0)


def test_model_inputs_shapes_and_ranges(dataset_dir):
    ds = SceneDataset(dataset_dir)
    batch = ds.get_views([(0, (1, 2, 3, 9)), (4, (0, 5, 6, 7))])
    context_x, context_v, query_x, query_v = model_inputs(batch)
    assert context_x.shape == (2, 3, 3, 64, 64) and query_x.shape == (2, 3, 64, 64)
    assert context_v.shape == (2, 3, 7) and query_v.shape == (2, 7)
    assert context_x.dtype == torch.float32 and 0 <= context_x.min() and context_x.max() <= 1
    torch.testing.assert_close(query_x[1], torch.from_numpy(ds[4].frames[7]).permute(2, 0, 1).float() / 255)
    torch.testing.assert_close(query_v[0], viewpoints(torch.from_numpy(ds[0].cameras[9])))


def test_sampler_draws_context_sizes_and_distinct_views():
    sampler = ViewSampler(num_scenes=200, views_per_scene=15, batch_size=10, max_context=5, seed=3)
    batches = list(sampler)
    assert len(batches) == 20
    sizes = {len(b[0][1]) - 1 for b in batches}
    assert sizes <= set(range(1, 6)) and len(sizes) >= 3
    for b in batches:
        assert len({len(views) for _, views in b}) == 1  # one K per batch
        for _, views in b:
            assert len(set(views)) == len(views) and max(views) < 15
    scenes = [s for b in batches for s, _ in b]
    assert sorted(scenes) == list(range(200))  # one epoch visits every scene once


def test_sampler_is_reproducible_and_resumable():
    def sampler():
        return ViewSampler(num_scenes=50, views_per_scene=10, batch_size=4, seed=7)

    a, b = sampler(), sampler()
    epoch0 = list(a)
    assert epoch0 == list(b) and len(epoch0) == 12
    epoch1 = list(a)
    assert epoch1 != epoch0 and epoch1 == [b.batch(1, i) for i in range(12)]
    b = sampler()
    c = sampler()
    it = iter(c)
    for _ in range(5):
        next(it)
    state = c.state_dict()
    d = sampler()
    d.load_state_dict(state)
    assert list(d) == list(b)[5:]
    assert ViewSampler(50, 10, 4, seed=8).batch(0, 0) != b.batch(0, 0)


def test_sampler_fixed_context_and_ranks():
    full = ViewSampler(40, 15, 8, context_size=3, seed=1)
    assert all(len(v) == 4 for _, v in full.batch(0, 2))
    parts = [ViewSampler(40, 15, 8, context_size=3, seed=1, rank=r, world_size=2).batch(0, 2) for r in (0, 1)]
    assert parts[0] + parts[1] == full.batch(0, 2)
    with pytest.raises(GQNError, match=r"context size \(--max-context\) must be 1\.\.14"):
        ViewSampler(40, 15, 8, context_size=15)


@pytest.mark.slow
def test_loader_batches_identical_with_0_and_2_workers(dataset_dir):
    ds = SceneDataset(dataset_dir)
    runs = []
    for workers in (0, 2):
        loader = make_loader(ds, batch_size=4, max_context=5, seed=11, workers=workers)
        runs.append([b for _ in range(2) for b in loader])  # two epochs
    assert len(runs[0]) == 6
    for x, y in zip(*runs):
        assert torch.equal(x["frames"], y["frames"]) and torch.equal(x["cameras"], y["cameras"])
    assert not torch.equal(runs[0][0]["cameras"], runs[0][3]["cameras"])  # epochs differ
