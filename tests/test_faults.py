"""Bad input and faults (issue 15): each is a one-line error, or counted and said, never a silent
wrong answer, and none of them blocks a resume. A test per case of the issue, in its order (case 9,
a pickle refused in our words, is tests/test_train.py::test_checkpoints_never_run_code), then the
fault injection: a disk that fills during logging and during a save, then frees."""

import builtins
import contextlib
import errno
import io
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_dataset, random_scene, tiny_training

from gqn.checkpoint import load_checkpoint, load_model, load_weights, save_checkpoint
from gqn.cli import main
from gqn.data import SceneDataset, ViewSampler, read_scenes, write_scenes
from gqn.data.index import record_index
from gqn.data.scenes import encode_jpeg
from gqn.data.tfrecord import HEADER_BYTES, encode_example, frame_record, masked_crc32c
from gqn.errors import DataError, GQNError
from gqn.export import export
from gqn.held_out import held_out_batch
from gqn.metrics import PSNR_CAP, psnr, view_scores
from gqn.runlog import RunLog, read_metrics
from gqn.train import TrainConfig, train


def short_run(data, run_dir, **kw) -> TrainConfig:
    """conftest's tiny_training, for 6 steps with a metric record at each."""
    return tiny_training(data, run_dir, **{"max_steps": 6, "log_every": 1, **kw})


def one_line_error(argv, capsys) -> str:
    """What `gqn ARGV` says when it fails: one line, no traceback."""
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("gqn: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def write_scene_with_cameras(path, cameras_of: dict[int, np.ndarray], scenes=4, views=5):
    """A TFRecord file of `scenes` scenes whose scene i has the cameras `cameras_of[i]`, if given."""
    rng = np.random.default_rng(0)
    written = []
    for i in range(scenes):
        scene = random_scene(rng, views=views, size=32)
        if i in cameras_of:
            scene.cameras[:] = cameras_of[i]
        written.append(scene)
    write_scenes(path, written)
    return [int(o) for o, _ in record_index(path)]


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, size: str, read_only: bool = False):
    """A tmpfs of `size` at `folder`, where this process may mount one (root with the right); else skip."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)]).returncode
    ):
        pytest.skip("mounting a tmpfs needs root and the right to mount")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder this process cannot create files in: mode 0555, or for root a read-only tmpfs."""
    folder = tmp_path / "read-only"
    if os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    with mounted_tmpfs(folder, "1m", read_only=True):
        yield folder


# ----------------------------------------------------------------------------------------------
# 1. NaN never scores as perfect


def test_nan_scores_nan_not_the_psnr_cap():
    x = torch.rand(2, 3, 8, 8)
    nan = x.clone()
    nan[1, 0, 0, 0] = float("nan")
    scores = psnr(nan, x)
    assert scores[0].item() == PSNR_CAP and torch.isnan(scores[1])  # identical, then NaN
    assert psnr(torch.full_like(x, float("inf")), x).tolist() == [float("-inf")] * 2
    gain, _ = view_scores(nan, x)
    assert np.isnan(gain)


def test_a_non_finite_camera_is_an_error_naming_the_record(tmp_path, capsys):
    folder = tmp_path / "mine" / "test"
    folder.mkdir(parents=True)
    offsets = write_scene_with_cameras(folder / "1-of-2.tfrecord", {2: np.array([0, 0, np.nan, 0, 0])})
    write_scene_with_cameras(folder / "2-of-2.tfrecord", {0: np.array([np.inf, 0, 0, 0, 0])})
    with pytest.raises(
        DataError, match=rf"1-of-2\.tfrecord at byte {offsets[2]}: camera of view 0 is not finite"
    ):
        list(read_scenes(folder / "1-of-2.tfrecord"))
    assert main(["data", "verify", str(folder), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert (
        f"1-of-2.tfrecord at byte {offsets[2]}: camera of view 0 is not finite: [0.0, 0.0, nan, 0.0, 0.0]"
        in out
    )
    assert "2-of-2.tfrecord at byte 0: camera of view 0 is not finite: [inf, 0.0, 0.0, 0.0, 0.0]" in out
    assert out.splitlines()[-1].endswith("2 problem(s)")


def test_eval_of_a_nan_camera_scene_names_it_instead_of_scoring_it(trained_tiny, tmp_path, capsys):
    _, run = trained_tiny
    bad = make_dataset(tmp_path, files=(1, 1), scenes_per_file=6)
    path = bad / "test" / "1-of-1.tfrecord"
    offsets = write_scene_with_cameras(path, {4: np.array([0, 0, 0, np.nan, 0])}, scenes=6, views=15)
    out = tmp_path / "eval.json"
    err = one_line_error(["eval", str(run), "--data", str(bad), "--scenes", "6", "--out", str(out)], capsys)
    assert f"1-of-1.tfrecord at byte {offsets[4]}: camera of view 0 is not finite" in err
    assert not out.exists()


def test_weights_holding_nan_are_refused(trained_tiny, tmp_path):
    from safetensors.torch import load_file

    from gqn.checkpoint import save_weights

    _, run = trained_tiny
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    name = next(iter(state["model"]))
    state["model"][name][(0,) * state["model"][name].dim()] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(GQNError, match=rf"nan\.pt: 1 weight tensor\(s\) hold NaN or inf \({name}\)"):
        load_model(tmp_path / "nan.pt")
    weights, description = export(run, "tiny", tmp_path)
    tensors = load_file(weights)
    tensors[name][(0,) * tensors[name].dim()] = float("nan")
    meta = json.loads(description.read_text())
    save_weights(tmp_path / "nan", "tiny", tensors, meta)  # a fresh SHA-256: only the values are wrong
    with pytest.raises(
        GQNError, match=rf"tiny\.safetensors: 1 weight tensor\(s\) hold NaN or inf \({name}\)"
    ):
        load_weights(tmp_path / "nan" / "tiny.safetensors")


def test_render_of_own_views_with_a_nan_camera_says_which(trained_tiny, tmp_path, capsys):
    _, run = trained_tiny
    scene = random_scene(np.random.default_rng(0), views=3, size=64)
    from PIL import Image

    for i, frame in enumerate(scene.frames):
        Image.fromarray(frame).save(tmp_path / f"{i}.png")
    cameras = scene.cameras.tolist()
    cameras[1][4] = float("nan")
    (tmp_path / "cameras.json").write_text(json.dumps(cameras))
    err = one_line_error(
        ["render", str(run), "--scene", str(tmp_path), "--context", "2", "--out", str(tmp_path / "g.png")],
        capsys,
    )
    assert "the camera of view 1 (1.png) is not finite" in err


# ----------------------------------------------------------------------------------------------
# 2. A full disk says so, and never blocks a resume (the fault injection is at the end)


class Filling:
    """A file on a `PatchedDisk`: once the disk is full its writes take what room is left, then
    fail with ENOSPC, as they do on a full file system."""

    def __init__(self, f, disk):
        self.f, self.disk = f, disk

    def write(self, data):
        if self.disk.room is None:
            return self.f.write(data)
        fits = min(len(data), self.disk.room)
        self.disk.room -= fits
        written = self.f.write(data[:fits]) if fits else 0
        self.f.flush()
        if fits < len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return written

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def __iter__(self):
        return iter(self.f)

    def __getattr__(self, name):
        return getattr(self.f, name)


class PatchedDisk:
    """Files opened under `root` behave as on a disk that `fill()` fills (leaving `room` bytes)
    and `free()` empties: Python's open, io.open and os.fdopen are patched."""

    def __init__(self, root: Path, monkeypatch):
        self.root, self.room = str(root), None
        real = io.open

        def open_(file, *args, **kwargs):
            f = real(file, *args, **kwargs)
            name = (
                os.readlink(f"/proc/self/fd/{file}")
                if isinstance(file, int)
                else os.path.abspath(os.fsdecode(file))
            )
            return Filling(f, self) if name.startswith(self.root) else f

        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)

    def fill(self, room: int = 100):
        self.room = room

    def free(self):
        self.room = None


class Tmpfs:
    """A small tmpfs at `root` that `fill()` fills with a file and `free()` removes it."""

    def __init__(self, root: Path):
        self.root = root

    def fill(self):
        with open(self.root / "filler", "wb", buffering=0) as f:
            for chunk in (1 << 20, 1 << 12):
                with contextlib.suppress(OSError):
                    while f.write(bytes(chunk)) == chunk:
                        pass

    def free(self):
        (self.root / "filler").unlink()


def test_a_torn_last_line_blocks_neither_resume_nor_plot(tmp_path, capsys):
    data = make_dataset(tmp_path / "d", files=(1, 1), scenes_per_file=8)
    run = tmp_path / "run"
    train(short_run(data, run, max_steps=3, checkpoint_every=3))
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "split": "train", "lo')  # the write a full disk cut short
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3]
    assert main(["plot", str(run), "--out", str(tmp_path / "curves.png")]) == 0
    train(short_run(data, run, max_steps=5, checkpoint_every=3, resume="auto"))
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4, 5]
    assert (run / "metrics.jsonl").read_text().endswith("}\n")
    damaged = run / "metrics.jsonl"
    damaged.write_text(damaged.read_text().replace('{"step": 2', '{"step" 2', 1))
    with pytest.raises(GQNError, match=r"metrics\.jsonl: line 2 is not a JSON record"):
        read_metrics(run)  # only the last line may be torn


def test_a_full_disk_during_a_save_names_the_file_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    save_checkpoint({"step": 1, "model_config": {}, "w": torch.ones(1000)}, tmp_path)
    disk = PatchedDisk(tmp_path, monkeypatch)
    disk.fill()
    with pytest.raises(
        GQNError, match=r"checkpoints/step-00000002\.pt: no space left on the device \(\d+ bytes free\)"
    ):
        save_checkpoint({"step": 2, "model_config": {}, "w": torch.zeros(1000)}, tmp_path)
    disk.free()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.pt", "step-00000001.pt"]
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 1


def test_a_full_disk_while_logging_is_one_line_naming_the_log(tmp_path, monkeypatch):
    disk = PatchedDisk(tmp_path, monkeypatch)
    log = RunLog(tmp_path)
    log.scalars(1, "train", {"loss": 1.0})
    log.tb.flush()  # TensorBoard's writer thread has nothing left to write
    disk.fill(room=10)
    with pytest.raises(GQNError, match=r"metrics\.jsonl: no space left on the device"):
        log.scalars(2, "train", {"loss": 2.0})
    disk.free()
    log.close()
    assert (
        tmp_path / "metrics.jsonl"
    ).read_text() == '{"step": 1, "split": "train", "loss": 1.0}\n{"step": 2'


# ----------------------------------------------------------------------------------------------
# 3. A corrupt record in training: saved, said, and skipped when asked


def corrupt(path: Path, record: int) -> int:
    """Flip a byte in the data of record `record` of a TFRecord file; returns its offset."""
    offset = int(record_index(path)[record][0])
    blob = bytearray(path.read_bytes())
    blob[offset + HEADER_BYTES + 40] ^= 0xFF
    path.write_bytes(bytes(blob))
    return offset


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_record_saves_says_the_step_and_record_and_skip_corrupt_goes_on(tmp_path, workers):
    data = make_dataset(tmp_path / "d", files=(1, 1), scenes_per_file=12)
    # the first scene of the second batch (step 2) of the seed's first epoch
    scene = ViewSampler(12, 15, batch_size=4, seed=0).batch(0, 1)[0][0]
    path = data / "train" / "1-of-1.tfrecord"
    offset = corrupt(path, scene)
    run = tmp_path / "run"
    with pytest.raises(GQNError) as e:
        train(short_run(data, run, max_steps=6, checkpoint_every=100, workers=workers))
    assert str(e.value) == (
        f"{path} at byte {offset}: corrupt record: data CRC mismatch (a scene of the batch of step 2); "
        f"saved {run}/checkpoints/step-00000001.pt; --resume {run} --skip-corrupt goes on, each corrupt "
        "scene replaced by the next sound one"
    )
    with pytest.warns(UserWarning, match=f"skipping corrupt scene {scene}"):
        result = train(
            short_run(data, run, max_steps=6, checkpoint_every=100, resume=str(run), skip_corrupt=True)
        )
    assert result.step == 6 and [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4, 5, 6]


# ----------------------------------------------------------------------------------------------
# 4. A length field that claims more than the file holds


def test_a_record_length_past_the_end_of_the_file_is_a_truncated_record(tmp_path, capsys):
    length = struct.pack("<Q", 1 << 40)  # 1 TiB, with a valid CRC
    path = tmp_path / "shepard_metzler_5_parts" / "test" / "1-of-1.tfrecord"
    path.parent.mkdir(parents=True)
    good = frame_record(
        encode_example(
            {"frames": [encode_jpeg(np.zeros((8, 8, 3), np.uint8))], "cameras": np.zeros(5, np.float32)}
        )
    )
    path.write_bytes(good + length + struct.pack("<I", masked_crc32c(length)) + b"\0" * 20)
    with pytest.raises(
        DataError,
        match=rf"at byte {len(good)}: truncated record: header says 1099511627792 bytes, file has 32",
    ):
        list(read_scenes(path))
    assert main(["data", "verify", str(path), "--workers", "1"]) == 1
    assert f"at byte {len(good)}: truncated record" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# 5. Every value is checked where it enters, in one line


TRAIN_FLAGS = [
    ("--batch-size 0", "batch_size (--batch-size) must be at least 1, got 0"),
    ("--batch-size -4", "batch_size (--batch-size) must be at least 1, got -4"),
    ("--checkpoint-every 0", "checkpoint_every (--checkpoint-every) must be at least 1, got 0"),
    ("--log-every 0", "log_every (--log-every) must be at least 1, got 0"),
    ("--workers -1", "workers (--workers) must be at least 0, got -1"),
    ("--image-size -8", "image_size (--image-size) must be at least 8, got -8"),
    (
        "--image-size 30",
        "--image-size 30 for --config tiny: image_size must be a multiple of grid_scale 4, got 30",
    ),
    ("--sigma-start 0", "sigma_start (--sigma-start) must be more than 0, got 0.0"),
    ("--lr-start -1", "lr_start (--lr-start) must be at least 0, got -1.0"),
    ("--lr-end nan", "lr_end (--lr-end) must be a finite number, got nan"),
    ("--max-steps 0", "max_steps (--max-steps) must be at least 1, got 0"),
    ("--max-steps -5", "max_steps (--max-steps) must be at least 1, got -5"),
    ("--device gpu", "device (--device) must be auto, cpu, cuda or cuda:N, got 'gpu'"),
]


@pytest.mark.parametrize("flags, message", TRAIN_FLAGS, ids=[f for f, _ in TRAIN_FLAGS])
def test_bad_train_flags(trained_tiny, flags, message, capsys):
    data, _ = trained_tiny
    err = one_line_error(["train", "--data", data, "--config", "tiny", *flags.split()], capsys)
    assert err == f"gqn: error: {message}\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a GPU")
def test_device_cuda_without_a_gpu(trained_tiny, tmp_path, capsys):
    data, _ = trained_tiny
    err = one_line_error(["train", "--data", data, "--run-dir", str(tmp_path), "--device", "cuda"], capsys)
    assert err == "gqn: error: --device cuda: torch sees no CUDA device here; use --device cpu, or auto\n"


CONFIG_FILES = [
    ({"model": {"image_size": "64"}}, "c.json: image_size must be an integer, got '64'"),
    ({"model": {"kernel_size": 4}}, "c.json: kernel_size must be odd, got 4"),
    ({"model": {"r_channels": 1}}, "c.json: r_channels must be at least 8, got 1"),
    ({"model": {"shared_core": "no"}}, "c.json: shared_core must be true or false, got 'no'"),
    ({"train": {"batch_size": "8"}}, "c.json (train): batch_size (--batch-size) must be an integer, got '8'"),
    ({"train": {"max_steps": 2.5}}, "c.json (train): max_steps (--max-steps) must be an integer, got 2.5"),
    ([{"L": 2}], "c.json: expected a JSON object of config fields, got a list"),
]


@pytest.mark.parametrize("content, message", CONFIG_FILES, ids=[json.dumps(c)[:32] for c, _ in CONFIG_FILES])
def test_bad_config_files(trained_tiny, tmp_path, content, message, capsys):
    data, _ = trained_tiny
    (tmp_path / "c.json").write_text(json.dumps(content))
    err = one_line_error(["train", "--data", data, "--config", str(tmp_path / "c.json")], capsys)
    assert err == f"gqn: error: {tmp_path}/{message}\n"


EVAL_FLAGS = [
    ("--scenes 0", "--scenes must be at least 1, got 0"),
    ("--samples -1", "--samples must be at least 0, got -1"),
    ("--sigma 0", "--sigma must be more than 0, got 0.0"),
    ("--seed -1", "--seed must be at least 0, got -1"),
]


@pytest.mark.parametrize("flags, message", EVAL_FLAGS, ids=[f for f, _ in EVAL_FLAGS])
def test_bad_eval_flags(trained_tiny, tmp_path, flags, message, capsys):
    data, run = trained_tiny
    argv = ["eval", str(run), "--data", data, "--out", str(tmp_path / "e.json"), *flags.split()]
    assert one_line_error(argv, capsys) == f"gqn: error: {message}\n"


def test_checkpoints_lacking_what_a_verb_needs(trained_tiny, tmp_path, capsys):
    data, run = trained_tiny
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    torch.save({k: v for k, v in state.items() if k != "model"}, tmp_path / "no-model.pt")
    torch.save({k: v for k, v in state.items() if k != "rng"}, tmp_path / "no-rng.pt")
    err = one_line_error(
        ["eval", str(tmp_path / "no-model.pt"), "--data", data, "--out", str(tmp_path / "e.json")], capsys
    )
    assert (
        err == f"gqn: error: {tmp_path}/no-model.pt: a checkpoint without model: it holds no trained model\n"
    )
    resume = [
        "train",
        "--data",
        data,
        "--config",
        "tiny",
        "--batch-size",
        "4",
        "--run-dir",
        str(tmp_path / "r"),
    ]
    err = one_line_error([*resume, "--resume", str(tmp_path / "no-rng.pt")], capsys)
    assert err == f"gqn: error: {tmp_path}/no-rng.pt: a checkpoint without rng: it cannot continue a run\n"


def test_a_read_only_output_folder_is_said_before_the_work(trained_tiny, read_only_folder, capsys):
    data, run = trained_tiny
    out = read_only_folder / "eval.json"
    err = one_line_error(["eval", str(run), "--data", data, "--out", str(out)], capsys)
    assert err.startswith(f"gqn: error: {read_only_folder}: cannot write: ")
    assert capsys.readouterr().out == ""  # no table: nothing was evaluated
    err = one_line_error(
        ["train", "--data", data, "--config", "tiny", "--run-dir", str(read_only_folder / "run")], capsys
    )
    assert err.startswith(f"gqn: error: {read_only_folder}/run: cannot write: ")


# ----------------------------------------------------------------------------------------------
# 6. Temporaries of killed saves


def test_leftover_temporaries_of_killed_saves_are_removed_at_start(trained_tiny, tmp_path, capsys):
    data, _ = trained_tiny
    train(short_run(data, tmp_path, max_steps=2, checkpoint_every=1))
    folder = tmp_path / "checkpoints"
    for name in (".step-00000003.pt.k2j4x0.tmp", "last.pt.4242.tmp"):
        (folder / name).write_bytes(b"half a checkpoint")
    train(short_run(data, tmp_path, max_steps=3, checkpoint_every=1, resume="auto"))
    assert "removed 2 temporary file(s) of an interrupted save" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == [
        "last.pt",
        "step-00000001.pt",
        "step-00000002.pt",
        "step-00000003.pt",
    ]


# ----------------------------------------------------------------------------------------------
# 7. The held-out split is never the training split


def test_training_on_a_split_folder_holds_out_the_test_folder_beside_it(tmp_path, capsys):
    data = make_dataset(tmp_path, files=(1, 1), scenes_per_file=8)
    cfg = short_run(data, tmp_path / "run")
    from_dataset, from_split = held_out_batch(data, cfg), held_out_batch(data / "train", cfg)
    assert torch.equal(from_split["frames"], from_dataset["frames"])
    test_frames = torch.from_numpy(
        np.stack([s.frames for s in read_scenes(data / "test" / "1-of-1.tfrecord")])
    )
    assert any(torch.equal(from_split["frames"][0, -1], view) for view in test_frames.flatten(0, 1))
    shutil.rmtree(data / "test")
    assert held_out_batch(data / "train", cfg) is None
    assert f"no held-out evaluation: {data / 'train'} is the training data itself" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# 8. An empty file, and scenes whose views differ


def test_verify_flags_an_empty_file(dataset_dir, capsys):
    (dataset_dir / "test" / "2-of-2.tfrecord").write_bytes(b"")
    assert main(["data", "verify", str(dataset_dir), "--workers", "1"]) == 1
    assert f"problem: {dataset_dir}/test/2-of-2.tfrecord: no scenes in 0 bytes" in capsys.readouterr().out


def test_a_first_scene_with_fewer_views_than_the_rest_is_an_error(tmp_path, capsys):
    data = make_dataset(tmp_path, files=(1, 1), scenes_per_file=4)
    path = data / "train" / "1-of-1.tfrecord"
    scenes = list(read_scenes(path))
    scenes[0].frames, scenes[0].cameras = scenes[0].frames[:10], scenes[0].cameras[:10]
    write_scenes(path, scenes)
    last = int(record_index(path)[-1][0])
    with pytest.raises(
        DataError,
        match=rf"at byte {last}: scene has 15 views where the split's first scene \(.*1-of-1\.tfrecord at byte 0\) has 10",
    ):
        SceneDataset(data)
    assert main(["data", "verify", str(data), "--workers", "1"]) == 1
    assert "train: scenes have [10, 15] views, shepard_metzler_5_parts has 15" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# Fault injection: the disk fills while logging and while saving; space is freed; the run resumes


@pytest.fixture(params=["patched", "tmpfs"])
def disk(request, tmp_path, monkeypatch):
    """A disk that fills on demand: writes patched to fail with ENOSPC, or a real 32 MB tmpfs."""
    if request.param == "patched":
        yield PatchedDisk(tmp_path / "disk", monkeypatch), tmp_path / "disk"
        return
    with mounted_tmpfs(tmp_path / "disk", "32m") as root:
        yield Tmpfs(root), root


@pytest.mark.slow
@pytest.mark.parametrize("at", ["log", "save"])
def test_a_disk_that_fills_then_frees_resumes_to_the_uninterrupted_losses(tmp_path, disk, at, monkeypatch):
    disk, root = disk
    data = make_dataset(tmp_path / "d", files=(1, 1), scenes_per_file=12)
    settings = dict(max_steps=8, checkpoint_every=3, image_every=0, eval_every=4)
    train(short_run(data, tmp_path / "straight", **settings))
    run = root / "run"
    with monkeypatch.context() as m:  # the disk fills as step 4 is logged, or as step 6 is saved
        if at == "log":
            scalars = RunLog.scalars
            m.setattr(
                RunLog,
                "scalars",
                lambda log, step, *a: (step == 4 and disk.fill(), scalars(log, step, *a))[1],
            )
        else:
            import gqn.train

            real = gqn.train.save_checkpoint
            m.setattr(
                gqn.train,
                "save_checkpoint",
                lambda state, *a, **k: (state["step"] == 6 and disk.fill(), real(state, *a, **k))[1],
            )
        with pytest.raises(
            GQNError, match=r"no space left on the device \(\d+ bytes free\); free some and run again"
        ) as e:
            train(short_run(data, run, **settings))
    where = str(e.value).split(": no space left")[0]
    if isinstance(disk, PatchedDisk):  # which write meets the full disk first is known exactly
        assert where == str(run / ("metrics.jsonl" if at == "log" else "checkpoints/step-00000006.pt"))
    assert where.startswith(str(run))
    assert not list((run / "checkpoints").glob(".*.tmp"))
    disk.free()
    result = train(short_run(data, run, resume="auto", **settings))
    assert result.step == 8

    def losses(run_dir, split):
        return [(r["step"], r["loss"], r["kl"], r["mse"]) for r in read_metrics(run_dir, split)]

    for split in ("train", "eval"):  # to the bit, and each step once
        assert losses(run, split) == losses(tmp_path / "straight", split)
    assert [r["step"] for r in read_metrics(run)] == list(range(1, 9))
