"""How fast `gqn view` draws: the latency per frame, and what a fast drag costs.

    python benchmarks/view_latency.py                 # small (paper architecture) + every shipped model
    python benchmarks/view_latency.py --frames 100

For each model, on a few freshly rendered synthetic scenes of its dataset (at the dataset's own
frame size, 3 context views),
with the camera stepping along the dataset's path as a drag moves it:
  - render: the model's prior-mean prediction and its PNG, as the server's renderer makes them
    (median and 90th percentile over --frames frames);
  - round trip: the same through the real server (uvicorn, Starlette, JSON over HTTP on
    loopback), one request at a time, as a page waits for each; the main thread renders and the
    server runs on another, as in `gqn view` (gqn/view/live.py says why);
  - drag: requests sent every 8 ms (a 120 Hz pointer) for 2 s from one page: how many were drawn
    and how many dropped as overtaken, and how long after the last one its picture arrived; a
    server that queued them would have answered it only after drawing every one before it.
`small`'s weights are untrained (its speed is its architecture's); the shipped weights are the
epipolar model's with pixel evidence.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from gqn.allocator import keep_freed_memory
from gqn.checkpoint import Loaded, available, load_model
from gqn.data import SceneDataset
from gqn.model import GQN, PRESETS
from gqn.synth import synthesize
from gqn.view import Viewer, listen, make_app
from gqn.view.live import LiveRenderer


def scenes(dataset: str, root: Path) -> Path:
    synthesize(dataset, root, train_scenes=1, test_scenes=4, seed=0, workers=1, progress=False)
    return root / dataset


def requests(frames: int) -> list[dict]:
    """Render requests along a drag: yaw in steps of 0.05 rad (5 px of drag), pitch 0.3."""
    return [
        {"scene": i % 4, "context": [0, 1, 2], "yaw": 0.05 * i, "pitch": 0.3, "client": "bench"}
        for i in range(frames)
    ]


def post(url: str, body: dict) -> tuple[int, float]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, 1000 * (time.perf_counter() - start)


def measure(name: str, viewer: Viewer, frames: int) -> dict:
    bodies = requests(frames)
    for body in bodies[:3]:  # warm up
        viewer.request(body)()
    render = [viewer.request(body)()["render_ms"] for body in bodies]

    import uvicorn

    # as `gqn view` runs: this (the main) thread renders, the server and the client run beside it
    live = LiveRenderer(thread=False)
    sock = listen("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/render"
    server = uvicorn.Server(uvicorn.Config(make_app(viewer, live), log_level="warning", lifespan="off"))
    http = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    http.start()
    figures: dict = {}

    def client_side():
        try:
            figures.update(drive(url, server, bodies))
        except BaseException as e:  # said below, on this thread, once the server has stopped
            figures["error"] = e

    client = threading.Thread(target=client_side, daemon=True)
    client.start()
    live.serve(alive=client.is_alive)
    server.should_exit = True
    http.join(10)
    live.close()
    sock.close()
    if "error" in figures:
        raise figures["error"]
    return {
        "model": name,
        "render": render,
        **figures,
        "queued_ms": figures["sent"] * float(np.median(render)),
    }


def drive(url: str, server, bodies: list[dict]) -> dict:
    """The client: one request at a time, then a fast drag (a request every 8 ms for 2 s, each
    answered or dropped)."""
    while not server.started:
        time.sleep(0.01)
    round_trip = [post(url, body)[1] for body in bodies]
    burst = requests(250)
    with ThreadPoolExecutor(64) as pool:
        futures = []
        for body in burst:
            futures.append(pool.submit(post, url, body))
            time.sleep(0.008)
        answers = [f.result() for f in futures]
    statuses = [status for status, _ in answers]
    return {
        "round_trip": round_trip,
        "drawn": statuses.count(200),
        "dropped": statuses.count(409),
        "sent": len(burst),
        "last_ms": answers[-1][1],
    }


def main() -> None:
    keep_freed_memory()  # as gqn's console script does before `gqn view`
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=60, help="frames timed per model")
    args = p.parse_args()
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = {d: scenes(d, Path(tmp) / d) for d in dict.fromkeys(["shepard_metzler_5_parts", *available()])}
        sm = SceneDataset(data["shepard_metzler_5_parts"], "test", 64)
        small = GQN(PRESETS["small"]).eval()
        loaded = Loaded(path="-", step=0, sigma=2.0, config=small.config)
        rows.append(measure("small (untrained), 64 px", Viewer(small, sm, loaded, "small"), args.frames))
        for dataset in available():
            model, loaded = load_model(f"pretrained:{dataset}")
            size = model.config.image_size
            test = SceneDataset(data[dataset], "test", size)
            viewer = Viewer(model, test, loaded, dataset)
            rows.append(measure(f"pretrained:{dataset}, {size} px", viewer, args.frames))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; K = 3, {args.frames} frames")
    print(
        f"{'model':56} {'render ms':>16} {'round trip ms':>16}   drag at 120 Hz for 2 s: "
        "drawn / dropped, last picture after"
    )
    for r in rows:
        render = f"{np.median(r['render']):.1f} / {np.percentile(r['render'], 90):.1f}"
        trip = f"{np.median(r['round_trip']):.1f} / {np.percentile(r['round_trip'], 90):.1f}"
        print(
            f"{r['model']:56} {render:>16} {trip:>16}   {r['drawn']:3d} / {r['dropped']:3d} of {r['sent']}, "
            f"{r['last_ms']:.0f} ms (queued: {r['queued_ms'] / 1000:.1f} s)"
        )
    print("(render and round trip: median / 90th percentile)")


if __name__ == "__main__":
    main()
