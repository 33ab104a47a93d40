"""Novel views from a trained GQN: `gqn render`.

    gqn render CHECKPOINT --data ROOT/DATASET --scene 3 --out grid.png
    gqn render CHECKPOINT --data ROOT/DATASET --scene 3 --orbit --out orbit.gif
    gqn render CHECKPOINT --scene my_scene/ --orbit --out orbit.gif

The grid shows, left to right: the K context views, the true query view (view 0 of the scene),
the reconstruction through the posterior, the prediction with z at the prior mean, `--samples`
draws from the prior and their per-pixel standard deviation (white where the samples disagree);
the PSNR of the prior mean and the posterior against the truth is printed. The orbit moves the
camera along the dataset's own camera path, as the datasets' table gives it (Shepard-Metzler: the
sphere of radius 10/3 at `--pitch`; rooms: the ring), and predicts every frame from the same
context, with z at the prior mean.

Without --data the scenes are the built-in data of the dataset the model was trained on. --out
is written in the format its extension names: the grid as PNG, JPEG or GIF, the orbit as GIF or
an animated PNG (gqn render ... --orbit --out orbit.png).

`--scene` may name a folder of your own views instead of a scene index: images (*.png, *.jpg,
sorted by name) and `cameras.json` (a list of [x, y, z, yaw, pitch], one per image) or
`cameras.txt` (one camera per line).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from gqn.arguments import MODEL_DATA, HelpFormatter, checkpoint, data, hidden_alias, scene
from gqn.cameras import ORBIT_FRAMES, orbit_cameras
from gqn.checkpoint import load_model
from gqn.data.table import CAMERA_PATHS, FREE, camera_path
from gqn.defaults import open_dataset
from gqn.errors import GQNError
from gqn.files import writable_folder
from gqn.images import ANIMATED, STILL, image_format, save_animation, save_image
from gqn.metrics import psnr
from gqn.novel_views import grid_image, predict, render_orbit


def own_scene(folder: str | os.PathLike, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames (V, size, size, 3) uint8 and cameras (V, 5) from a folder of images and cameras."""
    folder = Path(folder)
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if (folder / "cameras.json").exists():
        cameras = np.asarray(json.loads((folder / "cameras.json").read_text()), dtype=np.float32)
    elif (folder / "cameras.txt").exists():
        cameras = np.loadtxt(folder / "cameras.txt", dtype=np.float32, ndmin=2)
    else:
        raise GQNError(f"{folder}: no cameras.json or cameras.txt beside the images")
    if cameras.shape != (len(images), 5):
        raise GQNError(
            f"{folder}: {len(images)} images but cameras are {cameras.shape}, expected ({len(images)}, 5)"
        )
    if not np.isfinite(cameras).all():
        view = int(np.argmin(np.isfinite(cameras).all(1)))
        raise GQNError(
            f"{folder}: the camera of view {view} ({images[view].name}) is not finite: {cameras[view].tolist()}"
        )
    if len(images) < 2:
        raise GQNError(f"{folder}: at least 2 views are needed (context and query), found {len(images)}")
    frames = np.stack(
        [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)) for p in images]
    )
    return frames, cameras


def load_views(
    scene: str, data: str | None, split: str, size: int, trained_on: str | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """(frames, cameras, dataset name) of a scene index of `data` (default: the built-in data of
    `trained_on`, the model's dataset), or of a folder of own views."""
    if not scene.isdigit():
        if not Path(scene).is_dir():
            raise GQNError(f"--scene {scene}: not a scene index nor a folder")
        frames, cameras = own_scene(scene, size)
        return frames, cameras, Path(scene).name
    ds = open_dataset(data, split, size, trained_on)
    index = int(scene)
    if index >= len(ds):
        raise GQNError(f"--scene {index}: {ds.dataset_name}/{split} has scenes 0..{len(ds) - 1}")
    s = ds[index]
    return s.frames, s.cameras, ds.dataset_name


def add_parser(sub) -> None:
    own = "scene index, or a folder of images + cameras.json"
    p = sub.add_parser(
        "render",
        help="novel views: a prediction grid, or an orbit GIF",
        description=__doc__,
        formatter_class=HelpFormatter,
        parents=[checkpoint(), data(default=MODEL_DATA), scene(own, type=str, default="0")],
    )
    p.add_argument("--context", type=int, default=3, help="context views")
    p.add_argument("--samples", type=int, default=4, help="prior samples in the grid")
    p.add_argument("--orbit", action="store_true", help="an orbit animation instead of the grid")
    p.add_argument("--frames", type=int, default=ORBIT_FRAMES, help="orbit frames (one full turn)")
    p.add_argument(
        "--pitch", type=float, default=None, help="orbit pitch in radians (sphere path; default π/8)"
    )
    choices = ["auto", "sphere", "ring"]
    p.add_argument("--camera-path", choices=choices, default="auto", help="orbit path (auto: the dataset's)")
    hidden_alias(p, "--path", "camera_path", choices=choices)
    p.add_argument("--seed", type=int, default=0, help="seeds the prior samples")
    p.add_argument(
        "--out",
        required=True,
        help="the file to write, in the format of its extension: "
        f"the grid as {', '.join(STILL)}, the orbit as {', '.join(ANIMATED)} (an animated PNG)",
    )
    p.set_defaults(run=run)


def run(args) -> int:
    image_format(args.out, animated=args.orbit)  # a file it cannot write is refused before any work
    writable_folder(Path(args.out).parent)
    model, loaded = load_model(args.checkpoint)
    frames, cameras, name = load_views(
        args.scene, args.data, args.split, model.config.image_size, loaded.dataset
    )
    if args.orbit:
        if args.frames < 2:
            raise GQNError(f"--frames {args.frames}: an orbit needs at least 2")
        path = camera_path(name) if args.camera_path == "auto" else CAMERA_PATHS[args.camera_path]
        if path == FREE:
            raise GQNError(
                f"no orbit path is known for {name!r}: its camera is free; pass --camera-path sphere or ring"
            )
        orbit = orbit_cameras(path, args.frames, args.pitch)
        out = save_animation(render_orbit(model, frames, cameras, orbit, args.context), args.out)
        print(
            f"wrote {out}: {args.frames} frames around {name} scene {args.scene} from {args.context} context views"
        )
    else:
        p = predict(model, frames, cameras, args.context, args.samples, args.seed)
        out = save_image(grid_image(p), args.out)
        print(f"wrote {out}: {name} scene {args.scene}, {args.context} context views, {args.samples} samples")
        scores = {k: psnr(p[k], p["truth"]).item() for k in ("posterior", "prior_mean")}
        print(
            f"PSNR against the truth: prior mean {scores['prior_mean']:.2f} dB, posterior {scores['posterior']:.2f} dB"
        )
    return 0
