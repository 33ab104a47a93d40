"""`gqn data download` against a real HTTP server on loopback that serves the bucket's layout."""

import base64
import hashlib
import http.server
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
from conftest import random_scene

from gqn.cli import main
from gqn.data import write_scenes
from gqn.data.download import download, parse_goog_hash
from gqn.data.table import DATASETS
from gqn.data.tfrecord import masked_crc32c
from gqn.errors import GQNError

NAME = "shepard_metzler_5_parts"
REPO = Path(__file__).resolve().parents[1]


class Bucket(http.server.ThreadingHTTPServer):
    """Serves files under `root` like the gqn-dataset bucket: Range requests, x-goog-hash headers,
    and on request: cut connections, corrupted bytes, error statuses, slow transfers."""

    daemon_threads = True

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), Handler)
        self.root = root
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.cut_after: dict[str, int] = {}  # path -> send only this many bytes, then hang up
        self.corrupt: set[str] = set()
        self.statuses: dict[str, list[int]] = {}  # path -> statuses to answer first, in order
        self.delay = 0.0  # seconds between 4 KB pieces
        self.hold: threading.Event | None = None  # when set: halfway through a file, wait for it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/gqn-dataset"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _serve(self, body: bool):
        server: Bucket = self.server
        path = self.path.removeprefix("/gqn-dataset/")
        server.requests.append((self.command, path, self.headers.get("Range")))
        if server.statuses.get(path):
            self.send_error(server.statuses[path].pop(0))
            return
        file = server.root / path
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        crc = base64.b64encode(google_crc32c.Checksum(data).digest()).decode()
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        start = (
            int(self.headers["Range"].removeprefix("bytes=").rstrip("-")) if self.headers.get("Range") else 0
        )
        if path in server.corrupt:
            data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("x-goog-hash", f"crc32c={crc},md5={md5}")
        self.end_headers()
        if not body:
            return
        payload = data[start:]
        if path in server.cut_after:
            payload = payload[: server.cut_after[path]]
        for i in range(0, len(payload), 4096):
            self.wfile.write(payload[i : i + 4096])
            if server.hold is not None and i < len(payload) // 2 <= i + 4096:
                self.wfile.flush()
                server.hold.wait(timeout=120)
            if server.delay:
                time.sleep(server.delay)
        if path in server.cut_after:
            self.close_connection = True

    def do_GET(self):
        self._serve(True)

    def do_HEAD(self):
        self._serve(False)


@pytest.fixture
def bucket(tmp_path):
    root = tmp_path / "bucket"
    info = DATASETS[NAME]
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in info.file_names(split)[:3]:
            path = root / NAME / split / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write_scenes(path, [random_scene(rng, views=15, size=64) for _ in range(3)])
    server = Bucket(root)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def download_args(dest: Path, bucket: Bucket, flags: str = "") -> list[str]:
    """`gqn data download` of the bucket's first files into `dest`, plus `flags`."""
    return ["data", "download", NAME, "--dest", str(dest), "--base-url", bucket.url, *flags.split()]


def fetched(dest: Path) -> list[str]:
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())


def test_full_download_verifies_and_reruns_skip(bucket, tmp_path):
    dest = tmp_path / "data"
    summary = download(NAME, dest, files=3, base_url=bucket.url, jobs=3, progress=False)
    assert summary["downloaded"] == 6 and summary["skipped"] == 0
    assert fetched(dest) == fetched(bucket.root)
    for f in fetched(dest):
        assert (dest / f).read_bytes() == (bucket.root / f).read_bytes()
    again = download(NAME, dest, files=3, base_url=bucket.url, progress=False)
    assert again["skipped"] == 6 and again["bytes"] == 0


def test_cut_connection_then_rerun_resumes_with_range(bucket, tmp_path):
    dest = tmp_path / "data"
    path = f"{NAME}/test/001-of-100.tfrecord"
    size = (bucket.root / path).stat().st_size
    bucket.cut_after[path] = 5000
    with pytest.raises(
        GQNError, match=r"001-of-100\.tfrecord: gave up after 2 tries, last error: connection closed early"
    ):
        download(NAME, dest, split="test", files=1, base_url=bucket.url, retries=2, progress=False)
    part = dest / path.replace(".tfrecord", ".tfrecord.part")
    assert part.exists() and not (dest / path).exists()
    assert 5000 <= part.stat().st_size < size
    del bucket.cut_after[path]
    have = part.stat().st_size
    download(NAME, dest, split="test", files=1, base_url=bucket.url, progress=False)
    assert ("GET", path, f"bytes={have}-") in bucket.requests  # resumed, not restarted
    assert (dest / path).read_bytes() == (bucket.root / path).read_bytes() and not part.exists()


def test_corrupted_bytes_are_detected_and_not_kept(bucket, tmp_path):
    dest = tmp_path / "data"
    path = f"{NAME}/train/001-of-900.tfrecord"
    bucket.corrupt.add(path)
    with pytest.raises(
        GQNError, match=r"001-of-900\.tfrecord: CRC-32C differs from the server's x-goog-hash"
    ):
        download(NAME, dest, split="train", files=1, base_url=bucket.url, progress=False)
    assert fetched(dest) == []  # neither the file nor its .part


def test_a_record_length_past_the_end_of_the_file_is_fatal_and_not_kept(bucket, tmp_path):
    """A length field with a valid CRC that claims 1 TiB: a truncated record, not a MemoryError."""
    path = f"{NAME}/train/001-of-900.tfrecord"
    size = (bucket.root / path).stat().st_size
    length = struct.pack("<Q", 1 << 40)
    with open(bucket.root / path, "ab") as f:
        f.write(length + struct.pack("<I", masked_crc32c(length)))
    with pytest.raises(
        GQNError,
        match=rf"001-of-900\.tfrecord: not a sound TFRecord file \(truncated record: header says "
        rf"1099511627792 bytes, file has 12 at byte {size}\); the partial file was deleted",
    ):
        download(NAME, tmp_path / "data", split="train", files=1, base_url=bucket.url, progress=False)
    assert fetched(tmp_path / "data") == []  # neither the file nor its .part


def test_http_errors(bucket, tmp_path, capsys):
    dest = tmp_path / "data"
    with pytest.raises(GQNError, match=r"004-of-900\.tfrecord: HTTP 404"):
        download(NAME, dest, split="train", files=4, base_url=bucket.url, progress=False)
    path = f"{NAME}/test/001-of-100.tfrecord"
    bucket.statuses[path] = [403]
    assert main(download_args(dest, bucket, "--split test --files 1")) == 1
    assert "001-of-100.tfrecord: HTTP 403" in capsys.readouterr().err
    bucket.statuses[path] = [500, 503]  # the sizing HEAD gets the 500, the first GET the 503
    summary = download(NAME, dest, split="test", files=1, base_url=bucket.url, progress=False)
    assert summary["downloaded"] == 1
    asked = [method for method, p, _ in bucket.requests if p == path]
    assert asked == ["HEAD", "HEAD", "GET", "GET"]  # 403 (fatal at once); 500; 503 retried; success


def test_unknown_dataset_and_bad_range(tmp_path):
    with pytest.raises(GQNError, match="unknown dataset 'shepard'"):
        download("shepard", tmp_path)
    with pytest.raises(GQNError, match=r"--range 5-1000: shepard_metzler_5_parts/test has files 1\.\.100"):
        download(NAME, tmp_path, split="test", span=(5, 1000))


def test_goog_hash_parsing():
    crc = base64.b64encode(b"\x01\x02\x03\x04").decode()
    assert parse_goog_hash(f"crc32c={crc}, md5=AAAAAAAAAAAAAAAAAAAAAA==") == {
        "crc32c": b"\x01\x02\x03\x04",
        "md5": bytes(16),
    }
    assert parse_goog_hash(None) == {}


@pytest.mark.slow
def test_sigint_leaves_only_part_files(bucket, tmp_path):
    dest = tmp_path / "data"
    bucket.hold = threading.Event()  # every file stalls halfway until the signal
    run = subprocess.Popen(
        [sys.executable, "-m", "gqn", *download_args(dest, bucket, "--files 3")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    deadline = time.time() + 60
    while not any(p.stat().st_size > 0 for p in dest.rglob("*.part")):
        assert time.time() < deadline and run.poll() is None, run.communicate()
        time.sleep(0.1)
    run.send_signal(signal.SIGINT)
    try:
        _, err = run.communicate(timeout=60)
    finally:
        bucket.hold.set()
    assert run.returncode == 130, err
    files = fetched(dest)
    assert files and all(f.endswith(".part") for f in files)


def test_not_enough_disk_is_said_before_anything_is_fetched(bucket, tmp_path, monkeypatch):
    import collections

    import gqn.data.download as dl

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(GQNError, match=r"data: 0\.00 GB to fetch but 0\.00 GB free"):
        download(NAME, tmp_path / "data", files=3, base_url=bucket.url, progress=False)
    assert not [r for r in bucket.requests if r[0] == "GET"]


def test_a_full_disk_during_the_transfer_is_fatal_and_clear(bucket, tmp_path, monkeypatch):
    import builtins

    real_open = builtins.open

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(28, "No space left on device")

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return (
            FullDisk(f) if str(file).endswith(".part") and "b" in mode and ("a" in mode or "w" in mode) else f
        )

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(GQNError, match=r"001-of-100\.tfrecord\.part: the disk is full"):
        download(NAME, tmp_path / "data", split="test", files=1, base_url=bucket.url, progress=False)


def test_dry_run_says_the_size(bucket, tmp_path, capsys):
    dest = tmp_path / "data"
    assert main(download_args(dest, bucket, "--files 3 --dry-run")) == 0
    total = sum((bucket.root / f).stat().st_size for f in fetched(bucket.root))
    assert capsys.readouterr().out.startswith(
        f"6 files, {total / 1e6:.1f} KB left to fetch: "[:0] or "6 files, "
    )
    assert [r for r in bucket.requests if r[0] == "GET"] == []  # nothing fetched


def test_dry_run_without_an_answer_from_the_server_is_an_error(tmp_path, capsys):
    """No network: not "0 B left to fetch" and exit 0, but which file went unanswered."""
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/gqn-dataset"
    argv = ["data", "download", NAME, "--dest", str(tmp_path), "--base-url", url, "--files", "2", "--dry-run"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("gqn: error: 4 of 4 files could not be sized, so there is no estimate")
    assert f"{url}/{NAME}/train/001-of-900.tfrecord: [Errno 111] Connection refused" in err


def test_ctrl_c_stops_the_transfers_and_is_raised_only_once_they_have_stopped():
    """Raised where it lands, a KeyboardInterrupt could leave a future's lock held and the pool
    waiting forever; within stopping_on_sigint it sets the stop and is raised on the way out."""
    from gqn.data.download import Stop, stopping_on_sigint

    before = signal.getsignal(signal.SIGINT)
    stop = Stop()
    reached_the_end = False
    with pytest.raises(KeyboardInterrupt):
        with stopping_on_sigint(stop):
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.wait(10)  # set by the handler, and nothing raised here
            reached_the_end = True
    assert reached_the_end and signal.getsignal(signal.SIGINT) is before
