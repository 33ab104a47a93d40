"""Turn a scene with the mouse: `gqn view`, a local web page on which the model draws, live, the
view from wherever the camera is dragged.

    gqn view pretrained:shepard_metzler_5_parts              # then open http://127.0.0.1:8000
    gqn view pretrained:rooms_ring_camera --port 8080
    gqn view runs/gqn --data data/shepard_metzler_5_parts --split test

The page: a scene picker; the scene's views as thumbnails (a click adds a view to the context or
takes it out; "go" puts the camera on that view's own camera, where the true view is shown beside
the prediction); the prediction, which follows the camera as you drag it (mouse or touch) or press
the arrow keys, along the dataset's camera path: the sphere around a Shepard-Metzler object (yaw
and pitch), the rooms' ring (yaw), elsewhere free yaw and pitch at the position of the last view
gone to; a switch between the prior mean and a sample (with a button for a fresh one); the camera's
numbers; and the latency of each frame.

The server is Starlette under uvicorn, on a thread beside the main one, which renders
(`gqn.view.live.LiveRenderer`; live.py says why there): a request that a newer one from the same
page overtakes before it starts is answered 409 and never rendered, so the picture keeps up with
the hand. Bad requests get
a JSON `{"error": "..."}` of one line and the server keeps serving. It binds to 127.0.0.1 unless
told otherwise (--host), and says so when told otherwise.

The JSON API the page uses (also for scripts and tests):
    GET  /api/info                        dataset, scenes, views, image size, camera path, model
    GET  /api/scene/N                     {"index", "views", "cameras": [[x, y, z, yaw, pitch], ...]}
    GET  /api/scene/N/view/J.png          the true view J of scene N
    POST /api/render                      {"scene", "context": [J...], "client", "mode": "mean"|"sample",
                                           "seed", and the camera: "view": J, or "yaw" and "pitch"
                                           (and "position" [x, y, z] on the free path)}
         -> {"image": PNG as base64, "camera": [x, y, z, yaw, pitch], "truth": J or null,
             "render_ms", "server_ms"}
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict
from functools import wraps
from importlib import resources

import numpy as np
from PIL import Image

from gqn.arguments import MODEL_DATA, HelpFormatter, checkpoint, data
from gqn.checkpoint import Loaded, load_model
from gqn.data import SceneDataset
from gqn.data.table import camera_path
from gqn.defaults import open_dataset
from gqn.errors import GQNError
from gqn.model import GQN
from gqn.novel_views import render_view
from gqn.view.live import LiveRenderer, Overtaken

PAGE = "page"  # the folder of the page in this package: index.html, view.js, view.css
PITCH_LIMIT = 1.45  # radians: the sphere path stops short of the poles, where yaw loses meaning
SCENE_CACHE = 8


class BadRequest(GQNError):
    """A request the server cannot answer: HTTP `status` with a one-line message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def png(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes."""
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"{what}: expected a finite number, got {json.dumps(value)}")
    return float(value)


def _position(body: dict) -> list[float]:
    position = body.get("position")
    if not (isinstance(position, list) and len(position) == 3):
        raise BadRequest(f"position: expected [x, y, z], got {json.dumps(position)}")
    return [_number(p, "position") for p in position]


def _index(text: str | int, what: str, count: int, where: str) -> int:
    """An index in 0..count-1 from a path segment or a JSON value, or a 404 naming the range."""
    whole = isinstance(text, int) and not isinstance(text, bool) and text >= 0
    if not (whole or (isinstance(text, str) and text.isdigit())):
        raise BadRequest(f"{what} {json.dumps(text)}: expected an index 0..{count - 1}")
    index = int(text)
    if index >= count:
        raise BadRequest(f"{what} {index}: {where} has {what}s 0..{count - 1}", status=404)
    return index


class Viewer:
    """What the page asks of a model and a split of scenes, without the web: scenes, their views,
    cameras along the path, and predictions."""

    def __init__(self, model: GQN, dataset: SceneDataset, loaded: Loaded, name: str):
        self.model = model
        self.dataset = dataset
        self.loaded = loaded
        self.name = name  # how the user named the checkpoint
        self.path = camera_path(dataset.dataset_name)  # the camera moves along it on the page
        self.where = f"{dataset.dataset_name}/{dataset.source.split}"
        self._scenes: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def info(self) -> dict:
        return {
            "dataset": self.dataset.dataset_name,
            "split": self.dataset.source.split,
            "scenes": len(self.dataset),
            "views": self.dataset.views,
            "image_size": self.model.config.image_size,
            "path": self.path.name,
            "pitch_limit": PITCH_LIMIT,
            "checkpoint": self.name,
            "step": self.loaded.step,
            "representation": self.model.config.representation,
        }

    def views(self, scene: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames (V, H, W, 3) uint8 and cameras (V, 5) of a scene (the last few kept decoded)."""
        with self._lock:
            if scene in self._scenes:
                self._scenes.move_to_end(scene)
                return self._scenes[scene]
        s = self.dataset[scene]
        with self._lock:
            self._scenes[scene] = (s.frames, s.cameras)
            while len(self._scenes) > SCENE_CACHE:
                self._scenes.popitem(last=False)
        return s.frames, s.cameras

    def scene_index(self, text: str | int) -> int:
        return _index(text, "scene", len(self.dataset), self.where)

    def scene(self, index: int) -> dict:
        _, cameras = self.views(index)
        return {"index": index, "views": len(cameras), "cameras": cameras.tolist()}

    def frame(self, scene: int, view: str | int) -> bytes:
        frames, _ = self.views(scene)
        return png(frames[_index(view, "view", len(frames), f"scene {scene}")])

    def camera(self, body: dict, cameras: np.ndarray) -> tuple[np.ndarray, int | None]:
        """The camera (5,) a render request asks for, and the scene's view it sits on (or None)."""
        if "view" in body:
            j = _index(body["view"], "view", len(cameras), f"scene {body.get('scene')}")
            return cameras[j], j
        yaw, pitch = _number(body.get("yaw"), "yaw"), _number(body.get("pitch"), "pitch")
        if self.path.name == "sphere":
            pitch = max(-PITCH_LIMIT, min(PITCH_LIMIT, pitch))
        position = [_position(body)] if self.path.name == "free" else None  # where the page stands it
        camera = self.path.cameras([yaw], [pitch], position)[0]
        return camera, sits_on(camera, cameras)

    def context(self, body: dict, views: int, scene: int) -> list[int]:
        context = body.get("context")
        if not isinstance(context, list) or not context:
            raise BadRequest(
                f"context: expected a list of one or more view indices, got {json.dumps(context)}"
            )
        indices = [_index(j, "view", views, f"scene {scene}") for j in context]
        if len(set(indices)) != len(indices):
            raise BadRequest(f"context {indices}: a view appears twice")
        return indices

    def request(self, body: dict):
        """Check a render request and return the job that renders it (run by the LiveRenderer)."""
        if not isinstance(body, dict):
            raise BadRequest("the request must be a JSON object")
        scene = self.scene_index(body.get("scene"))
        frames, cameras = self.views(scene)
        context = self.context(body, len(cameras), scene)
        camera, truth = self.camera(body, cameras)
        mode = body.get("mode", "mean")
        if mode not in ("mean", "sample"):
            raise BadRequest(f'mode {json.dumps(mode)}: expected "mean" or "sample"')
        seed = body.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise BadRequest(f"seed {json.dumps(seed)}: expected an integer >= 0")
        return lambda: (
            self.render(frames[context], cameras[context], camera, mode == "sample", seed)
            | {
                "scene": scene,
                "context": context,
                "truth": truth,
                "mode": mode,
                "seed": seed,
            }
        )

    def render(
        self, frames: np.ndarray, cameras: np.ndarray, camera: np.ndarray, sample: bool, seed: int
    ) -> dict:
        """The model's prediction at `camera` (5,) from context `frames` (K, H, W, 3) and
        `cameras` (K, 5): with z at the prior mean, or drawn from the prior under `seed`."""
        start = time.perf_counter()
        image = render_view(self.model, frames, cameras, camera, seed if sample else None)
        rendered = time.perf_counter()
        encoded = base64.b64encode(png(image)).decode()
        return {
            "image": encoded,
            "camera": np.asarray(camera, np.float32).tolist(),
            "render_ms": 1000 * (rendered - start),
        }


def sits_on(camera: np.ndarray, cameras: np.ndarray, tolerance: float = 1e-3) -> int | None:
    """The index of the scene camera that `camera` (5,) is, to `tolerance` (position relative to
    its distance from the origin, angles in radians, yaw modulo a turn), or None."""
    scale = max(1.0, float(np.linalg.norm(camera[:3])))
    near = np.linalg.norm(cameras[:, :3] - camera[:3], axis=1) <= tolerance * scale
    dyaw = np.abs((cameras[:, 3] - camera[3] + math.pi) % (2 * math.pi) - math.pi)
    near &= (dyaw <= tolerance) & (np.abs(cameras[:, 4] - camera[4]) <= tolerance)
    hits = np.flatnonzero(near)
    return int(hits[0]) if len(hits) else None


# ----------------------------------------------------------------------------------------------
# The web application


def make_app(viewer: Viewer, live: LiveRenderer):
    """The Starlette application: the page, its static files and the JSON API."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    def answers(endpoint):
        """Every failure as a JSON one-liner with its status; the server keeps serving."""

        @wraps(endpoint)
        async def wrapped(request):
            try:
                return await endpoint(request)
            except BadRequest as e:
                return JSONResponse({"error": str(e)}, status_code=e.status)
            except Overtaken as e:
                return JSONResponse({"error": str(e)}, status_code=409)
            except GQNError as e:  # e.g. a corrupt record of the data
                return JSONResponse({"error": str(e)}, status_code=500)
            except Exception as e:  # a bug: one line here and in the server's log, no traceback
                print(f"gqn view: {request.url.path}: {type(e).__name__}: {e}", file=sys.stderr)
                return JSONResponse({"error": f"{type(e).__name__}: {e}"}, status_code=500)

        return wrapped

    def blocking(function, *args):
        return asyncio.get_running_loop().run_in_executor(None, function, *args)

    async def page(request):
        return HTMLResponse(resources.files(__name__).joinpath(PAGE, "index.html").read_text())

    @answers
    async def info(request):
        return JSONResponse(viewer.info())

    @answers
    async def scene(request):
        index = viewer.scene_index(request.path_params["scene"])
        return JSONResponse(await blocking(viewer.scene, index))

    @answers
    async def frame(request):
        index = viewer.scene_index(request.path_params["scene"])
        body = await blocking(viewer.frame, index, request.path_params["view"])
        return Response(body, media_type="image/png")

    @answers
    async def render(request):
        start = time.perf_counter()
        try:
            body = await request.json()
        except ValueError:
            raise BadRequest("the request body is not JSON") from None
        job = await blocking(viewer.request, body)
        client = str(body.get("client", request.client.host if request.client else "-"))
        result = await asyncio.wrap_future(live.submit(client, job))
        result["server_ms"] = 1000 * (time.perf_counter() - start)
        return JSONResponse(result)

    @answers
    async def unknown(request):
        raise BadRequest(f"{request.url.path}: no such page", status=404)

    routes = [
        Route("/", page),
        Route("/api/info", info),
        Route("/api/scene/{scene}", scene),
        Route("/api/scene/{scene}/view/{view}.png", frame),
        Route("/api/render", render, methods=["POST"]),
        Route("/api/{rest:path}", unknown, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(packages=[(__name__, PAGE)])),
    ]
    return Starlette(routes=routes)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "view",
        help="a local web page: drag the camera, the model draws the view",
        description=__doc__,
        formatter_class=HelpFormatter,
        parents=[checkpoint(), data(default=MODEL_DATA)],
    )
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (another than 127.0.0.1 is said)")
    p.add_argument("--port", type=int, default=8000, help="port to serve on (0: any free port)")
    p.set_defaults(run=run)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, or a one-line error naming the address."""
    if not 0 <= port <= 65535:
        raise GQNError(f"--port {port}: expected 0..65535")
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(128)
    except OSError as e:
        raise GQNError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None
    return sock


def run(args) -> int:
    import uvicorn

    sock = listen(args.host, args.port)
    model, loaded = load_model(args.checkpoint)
    dataset = open_dataset(args.data, args.split, model.config.image_size, loaded.dataset)
    viewer = Viewer(model, dataset, loaded, args.checkpoint)
    live = LiveRenderer(thread=False)  # this thread renders, the only one that computes (live.py)
    host, port = sock.getsockname()[:2]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"note: serving on {args.host}, not 127.0.0.1: anyone who can reach this machine can use the page",
            file=sys.stderr,
        )
    shown = f"[{host}]" if ":" in host else host
    stopping = threading.Event()  # Ctrl-C or a TERM from here on: set by the handler, which takes no lock
    previous = {s: signal.signal(s, lambda *_: stopping.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    print(
        f"gqn view: {viewer.where}, {len(dataset)} scenes, {viewer.path.name} camera path; "
        f"open http://{shown}:{port}/ (Ctrl-C stops)",
        flush=True,
    )
    server = uvicorn.Server(uvicorn.Config(make_app(viewer, live), log_level="warning", lifespan="off"))
    http = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="gqn-view-http", daemon=True)
    http.start()
    try:
        live.serve(alive=lambda: http.is_alive() and not stopping.is_set())
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        server.should_exit = True
        live.close()
        http.join(10)
        sock.close()
    if not stopping.is_set():
        raise GQNError(f"gqn view: the web server on {shown}:{port} stopped (its error is above)")
    return 0
