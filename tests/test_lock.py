"""A run folder has one writer (issue 25): a second is refused in one line naming the holder, and
a holder killed with SIGKILL never blocks a resume."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_dataset, train_tiny
from test_train import gqn_cli, tiny_cli

from gqn.checkpoint import load_checkpoint
from gqn.cli import main
from gqn.demo import demo
from gqn.errors import GQNError
from gqn.export import export
from gqn.lock import claim
from gqn.runlog import read_metrics
from gqn.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
ME = f"{os.getpid()}@{socket.gethostname()}"


def refusal(folder, note: str) -> str:
    return (
        f"{folder}: another gqn is writing into it (process {note}); "
        "wait for it to end or stop it, or use another folder"
    )


def holding(folder, fork: bool = False) -> tuple[subprocess.Popen, int | None]:
    """A process that claims `folder` and sleeps, once it says so; `fork`: with a forked child
    that sleeps on (as a DataLoader worker would), whose pid comes second, returned once the child
    too has said it runs (by then its copy of the lock is closed: os.register_at_fork)."""
    code = f"""import os, sys, time
from gqn.lock import claim
with claim(sys.argv[1]):
    child = os.fork() if {fork} else None
    if child == 0:
        os.write(1, b"child\\n")  # one write each: the two lines never interleave
        time.sleep(60)
        os._exit(0)
    os.write(1, f"held {{child}}\\n".encode())
    time.sleep(60)
"""
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    said = [p.stdout.readline().split() for _ in range(2 if fork else 1)]
    (held,) = [line for line in said if line[0] == "held"]
    assert sorted(line[0] for line in said) == (["child", "held"] if fork else ["held"])
    return p, None if held[1] == "None" else int(held[1])


def test_a_held_folder_is_refused_naming_the_holder(tmp_path):
    with claim(tmp_path / "run") as path:
        assert path == tmp_path / "run" / ".lock" and path.read_text() == f"{ME}\n"
        with pytest.raises(GQNError) as e:
            with claim(tmp_path / "run"):
                pass
        assert str(e.value) == refusal(tmp_path / "run", ME)
        assert path.read_text() == f"{ME}\n"  # the holder's note, untouched by the refusal
    assert not path.exists()  # let go in order: nothing left behind


def test_a_released_folder_is_taken_again(tmp_path):
    for _ in range(2):
        with claim(tmp_path) as path:
            assert path.read_text() == f"{ME}\n"
    other, _ = holding(tmp_path)
    try:
        with pytest.raises(GQNError, match=f"process {other.pid}@"):
            with claim(tmp_path):
                pass
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("fork", [False, True], ids=["holder", "holder-with-a-forked-child"])
def test_the_note_of_a_killed_holder_is_replaced(tmp_path, fork):
    """The OS lock dies with its holder, even while a child it forked lives on."""
    other, child = holding(tmp_path, fork=fork)
    other.send_signal(signal.SIGKILL)
    other.wait()
    try:
        assert (tmp_path / ".lock").read_text() == f"{other.pid}@{socket.gethostname()}\n"  # stale
        if child is not None:
            os.kill(child, 0)  # alive: the lock went with its holder all the same
        with claim(tmp_path) as path:
            assert path.read_text() == f"{ME}\n"
    finally:
        if child is not None:
            os.kill(child, signal.SIGKILL)


def tiny(data, run_dir, **kw) -> TrainConfig:
    base = dict(config="tiny", batch_size=4, max_steps=3, log_every=1, eval_every=0, workers=0)
    return TrainConfig(data=str(data), run_dir=str(run_dir), **{**base, **kw})


def test_train_demo_and_export_refuse_a_held_folder_before_any_work(tmp_path):
    data, run = train_tiny(tmp_path / "a", scenes_per_file=8)
    folders = [tmp_path / name for name in ("run", "out", "weights")]
    with claim(folders[0]), claim(folders[1]), claim(folders[2]):
        with pytest.raises(GQNError, match=f"^{re.escape(refusal(folders[0], ME))}$"):
            train(tiny(data, folders[0]))
        with pytest.raises(GQNError, match=f"^{re.escape(refusal(folders[1], ME))}$"):
            demo(folders[1], steps=3, data=data, config="tiny")
        with pytest.raises(GQNError, match=f"^{re.escape(refusal(folders[2], ME))}$"):
            export(run, "tiny", folders[2])
    assert [list(f.iterdir()) for f in folders] == [[], [], []]  # nothing written, no lock left


# ----------------------------------------------------------------------------------------------
# Two real `gqn train` processes


def gqn_train(data, run_dir, flags: str) -> subprocess.Popen:
    """`gqn train` of the tiny model on `data` into `run_dir` in a process of its own, with `flags`."""
    return gqn_cli(*tiny_cli(str(data), run_dir, f"--workers 0 --eval-every 0 --log-every 1 {flags}"))


def wait_for(condition, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.1)


@pytest.mark.slow
def test_a_second_writer_is_refused_and_a_killed_first_resumes_exactly(tmp_path, capsys):
    data = make_dataset(tmp_path / "d", files=(2, 1), scenes_per_file=12)
    run = tmp_path / "run"
    first = gqn_train(data, run, "--max-steps 100000 --checkpoint-every 2")  # no progress bar on a pipe
    try:
        wait_for(lambda: len(read_metrics(run)) if (run / "metrics.jsonl").exists() else 0, first)

        second = gqn_train(data, run, "--max-steps 100000")
        out, err = second.communicate(timeout=120)
        assert second.returncode == 1 and out == ""
        assert err == f"gqn: error: {refusal(run, f'{first.pid}@{socket.gethostname()}')}\n"
        seen = len(read_metrics(run))
        wait_for(lambda: len(read_metrics(run)) > seen + 2, first)  # the first goes on

        assert main(["plot", str(run), "--out", str(tmp_path / "curves.png")]) == 0  # readers take no lock
        capsys.readouterr()

        wait_for(lambda: (run / "checkpoints" / "last.pt").exists(), first)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        first.kill()
        first.communicate()
    assert (run / ".lock").read_text() == f"{first.pid}@{socket.gethostname()}\n"  # its stale note
    steps = load_checkpoint(run / "checkpoints" / "last.pt")["step"] + 3
    again = gqn_train(data, run, f"--resume {run} --max-steps {steps}")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"resumed from {run}/checkpoints/last.pt at step {steps - 3}" in out
    assert not (run / ".lock").exists()
    straight = gqn_train(data, tmp_path / "straight", f"--max-steps {steps}")
    out, err = straight.communicate(timeout=300)
    assert straight.returncode == 0, err

    def losses(run_dir):
        return [(r["step"], r["loss"], r["kl"], r["mse"]) for r in read_metrics(run_dir)]

    assert [r["step"] for r in read_metrics(run)] == list(range(1, steps + 1))
    assert losses(run) == losses(tmp_path / "straight")  # to the bit
