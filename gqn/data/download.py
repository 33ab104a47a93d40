"""`gqn data download`: DeepMind's datasets over plain HTTPS, resumable and verified.

    gqn data download shepard_metzler_5_parts --dest data --split test --files 5
    gqn data download rooms_ring_camera --dest data --range 1-100 --jobs 8

Every object of the public bucket `gqn-dataset` is at
`https://storage.googleapis.com/gqn-dataset/<name>/<split>/<file>`, and the file names follow from
the dataset table, so no cloud SDK is needed. A file is fetched into `<file>.part`, resumed with an
HTTP Range request after a dropped connection or an interruption, and renamed to its real name
only once it is complete and verified: its size is the one the server announced, its CRC-32C and
MD5 match the server's `x-goog-hash` header where it gives one, and every TFRecord record's
framing CRCs check out. A file with its real name is therefore always whole, and a re-run skips
it; a `.part` file is never taken for a dataset file.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
from tqdm import tqdm

from gqn.data.table import SPLITS, get_dataset
from gqn.data.tfrecord import read_records
from gqn.errors import DataError, GQNError
from gqn.files import DISK_FULL

BASE_URL = "https://storage.googleapis.com/gqn-dataset"
CHUNK = 1 << 20
RETRIES = 6


class Fatal(GQNError):
    """A problem retrying cannot fix (403, 404, a full disk, corrupt data)."""


class Stop(threading.Event):
    """The signal for every transfer to stop. Setting it also cuts the connections in use, so a
    transfer waiting on a stalled server stops at once, not after its timeout (Ctrl-C is prompt)."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()
        self._live: set = set()

    @contextmanager
    def watching(self, response):
        with self._lock:
            self._live.add(response)
        if self.is_set():
            _cut(response)
        try:
            yield response
        finally:
            with self._lock:
                self._live.discard(response)

    def set(self) -> None:
        super().set()
        with self._lock:
            for response in self._live:
                _cut(response)


@contextmanager
def stopping_on_sigint(stop: Stop):
    """Within: Ctrl-C sets `stop` and is raised as KeyboardInterrupt on the way out, once every
    transfer has stopped. Raised where it lands instead, it could land inside a lock that the
    pool's futures share and leave the pool waiting forever. The handler sets `stop` from a
    thread of its own, so it never waits on a lock the code it interrupted holds."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []

    def handler(signum, frame):
        caught.append(signum)
        threading.Thread(target=stop.set, daemon=True).start()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _cut(response) -> None:
    """Shut the response's connection down: a read blocked on it returns at once."""
    try:
        sock = socket.socket(fileno=os.dup(response.fileno()))
    except (OSError, ValueError):  # already closed
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


@dataclass
class Job:
    url: str
    path: Path  # the final file

    @property
    def part(self) -> Path:
        return self.path.with_name(self.path.name + ".part")


def plan(
    dataset: str,
    dest: str | os.PathLike,
    split: str = "all",
    files: int | None = None,
    span: tuple[int, int] | None = None,
    base_url: str = BASE_URL,
) -> list[Job]:
    """The files to fetch, in the official layout under `dest`."""
    info = get_dataset(dataset)
    splits = SPLITS if split == "all" else (split,)
    jobs = []
    for s in splits:
        names = info.file_names(s)
        if span is not None:
            a, b = span
            if not 1 <= a <= b <= len(names):
                raise GQNError(f"--range {a}-{b}: {info.name}/{s} has files 1..{len(names)}")
            names = names[a - 1 : b]
        if files is not None:
            names = names[:files]
        jobs += [
            Job(f"{base_url.rstrip('/')}/{info.name}/{s}/{n}", Path(dest) / info.name / s / n) for n in names
        ]
    return jobs


def parse_goog_hash(header: str | None) -> dict[str, bytes]:
    """{'crc32c': 4 bytes, 'md5': 16 bytes} from an `x-goog-hash` header (either may be absent)."""
    out = {}
    for part in (header or "").split(","):
        name, _, value = part.strip().partition("=")
        if name in ("crc32c", "md5") and value:
            out[name] = base64.b64decode(value)
    return out


def _open(url: str, start: int, timeout: float):
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    return urllib.request.urlopen(request, timeout=timeout)


def _total_size(response, start: int) -> int | None:
    content_range = response.headers.get("Content-Range")  # bytes 100-199/200
    if response.status == 206 and content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) if length is not None else None


def fetch(job: Job, timeout: float, progress, stop: Stop, retries: int = RETRIES) -> str:
    """Fetch one file to completion (resuming its .part), verify it, rename it.

    Returns "done", "skipped" (already complete) or "stopped" (asked to stop; the .part stays).
    """
    if job.path.exists():
        return "skipped"
    job.path.parent.mkdir(parents=True, exist_ok=True)
    error = "no attempt"
    for attempt in range(retries):
        start = job.part.stat().st_size if job.part.exists() else 0
        try:
            with _open(job.url, start, timeout) as response, stop.watching(response):
                if start and response.status == 200:  # the server ignored the Range: start over
                    progress(-start)
                    start = 0
                total = _total_size(response, start)
                hashes = parse_goog_hash(response.headers.get("x-goog-hash"))
                with open(job.part, "ab" if start else "wb") as f:
                    while not stop.is_set():
                        chunk = response.read1(CHUNK)  # what has arrived: stops promptly when asked
                        if not chunk:
                            break
                        f.write(chunk)
                        progress(len(chunk))
            if stop.is_set():
                return "stopped"
            size = job.part.stat().st_size
            if total is not None and size < total:
                raise http.client.IncompleteRead(b"", total - size)
            _verify(job, total, hashes)
            os.replace(job.part, job.path)
            return "done"
        except http.client.HTTPException as e:  # the connection closed early: resume from the .part
            error = f"connection closed early ({type(e).__name__})"
        except urllib.error.HTTPError as e:
            if e.code in (403, 404):
                raise Fatal(
                    f"{job.url}: HTTP {e.code} {e.reason} (is the dataset name right, and the file public?)"
                ) from None
            if e.code == 416:  # nothing left to send: the .part is already whole, or wrong
                try:
                    _verify(job, None, {})
                    os.replace(job.part, job.path)
                    return "done"
                except Fatal:
                    job.part.unlink()
            elif e.code < 500:
                raise Fatal(f"{job.url}: HTTP {e.code} {e.reason}") from None
            error = f"HTTP {e.code}"
        except OSError as e:  # timeouts, resets, refused connections; a full disk is fatal
            if getattr(e, "errno", None) in DISK_FULL or "No space left" in str(e):
                raise Fatal(
                    f"{job.part}: the disk is full ({shutil.disk_usage(job.path.parent).free} bytes free)"
                ) from None
            error = str(getattr(e, "reason", e))
        if stop.is_set():
            return "stopped"
        time.sleep(min(30.0, 0.5 * 2**attempt))  # back off: 0.5, 1, 2, 4, 8 s ...
    raise GQNError(f"{job.url}: gave up after {retries} tries, last error: {error}; run again to resume")


def _verify(job: Job, total: int | None, hashes: dict[str, bytes]) -> None:
    """Size, the server's CRC-32C and MD5, and every record's framing CRCs; a bad .part is deleted."""
    size = job.part.stat().st_size
    problem = None
    if total is not None and size != total:
        problem = f"{size} bytes where the server announced {total}"
    if problem is None and hashes:
        crc, md5 = google_crc32c.Checksum(), hashlib.md5()
        with open(job.part, "rb") as f:
            while chunk := f.read(CHUNK):
                crc.update(chunk)
                md5.update(chunk)
        if "crc32c" in hashes and crc.digest() != hashes["crc32c"]:
            problem = "CRC-32C differs from the server's x-goog-hash"
        elif "md5" in hashes and md5.digest() != hashes["md5"]:
            problem = "MD5 differs from the server's x-goog-hash"
    if problem is None:
        try:
            with open(job.part, "rb") as f:
                for _ in read_records(f, str(job.part)):
                    pass
        except DataError as e:
            problem = f"not a sound TFRecord file ({e.what} at byte {e.offset})"
    if problem is not None:
        job.part.unlink()
        raise Fatal(f"{job.url}: {problem}; the partial file was deleted, run again to fetch it anew")


def head_sizes(jobs: list[Job], timeout: float, workers: int) -> tuple[int, list[str]]:
    """Bytes still to fetch, from HEAD requests (files already complete count 0), and for each
    file the server could not be asked about, why (one line each; such a file counts 0)."""

    def size(job: Job) -> tuple[int, str | None]:
        if job.path.exists():
            return 0, None
        request = urllib.request.Request(job.url, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = int(response.headers.get("Content-Length", 0))
        except urllib.error.HTTPError as e:
            if e.code in (403, 404):
                raise Fatal(
                    f"{job.url}: HTTP {e.code} {e.reason} (is the dataset name right, and the file public?)"
                ) from None
            return 0, f"{job.url}: HTTP {e.code} {e.reason}"
        except OSError as e:
            return 0, f"{job.url}: {getattr(e, 'reason', e)}"
        return max(0, length - (job.part.stat().st_size if job.part.exists() else 0)), None

    with ThreadPoolExecutor(workers) as pool:
        sizes = list(pool.map(size, jobs))
    return sum(n for n, _ in sizes), [why for _, why in sizes if why]


def download(
    dataset: str,
    dest: str | os.PathLike,
    split: str = "all",
    files: int | None = None,
    span: tuple[int, int] | None = None,
    jobs: int = 4,
    base_url: str = BASE_URL,
    timeout: float = 60.0,
    retries: int = RETRIES,
    progress: bool = True,
) -> dict:
    """Fetch the planned files with `jobs` parallel transfers; returns a summary dict."""
    todo = plan(dataset, dest, split, files, span, base_url)
    Path(dest).mkdir(parents=True, exist_ok=True)
    needed, _ = head_sizes(todo, timeout, jobs)  # a file not sized now is sized when fetched
    free = shutil.disk_usage(dest).free
    if needed > free:
        raise GQNError(f"{dest}: {needed / 1e9:.2f} GB to fetch but {free / 1e9:.2f} GB free")
    stop = Stop()
    counts = {"done": 0, "skipped": 0}
    start = time.perf_counter()
    fetched = 0
    lock = threading.Lock()
    with tqdm(
        total=needed,
        unit="B",
        unit_scale=True,
        desc=f"download {dataset}",
        disable=not progress or None,
        file=sys.stderr,
    ) as bar:

        def advance(n: int) -> None:
            nonlocal fetched
            with lock:
                fetched += n
                bar.update(n)

        with stopping_on_sigint(stop):  # Ctrl-C: every transfer stops, their .part files stay
            pool = ThreadPoolExecutor(jobs)
            try:
                futures = [pool.submit(fetch, job, timeout, advance, stop, retries) for job in todo]
                for future in as_completed(futures):
                    outcome = future.result()
                    counts[outcome] = counts.get(outcome, 0) + 1
            except BaseException:
                stop.set()  # cuts the transfers short; their .part files stay
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown()
    seconds = time.perf_counter() - start
    return {
        "files": len(todo),
        "downloaded": counts["done"],
        "skipped": counts["skipped"],
        "bytes": fetched,
        "seconds": seconds,
        "dest": str(dest),
    }


def parse_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    a, sep, b = text.partition("-")
    if not (sep and a.isdigit() and b.isdigit()):
        raise GQNError(f"--range {text!r}: expected A-B, e.g. 1-100")
    return int(a), int(b)
