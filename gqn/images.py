"""Image grids with captions, and pictures written in the format their file name says.

    save_image(grid(frames, 5), "views.png")        # or .jpg, .gif
    save_animation(frames, "orbit.gif")             # or .png: an animated PNG

Shapes: N images, H x W pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gqn.errors import GQNError
from gqn.files import atomic_write

CAPTION_HEIGHT = 12


def grid(
    images: np.ndarray | Sequence[np.ndarray],
    columns: int,
    captions: Sequence[str] | None = None,
    scale: int = 1,
    pad: int = 2,
) -> Image.Image:
    """Tile (N, H, W, 3) uint8 images row by row, each enlarged `scale` times, captions below."""
    images = [np.asarray(im) for im in images]
    h, w = images[0].shape[0] * scale, images[0].shape[1] * scale
    lines = max((c.count("\n") + 1 for c in captions), default=0) if captions else 0
    cap_h = CAPTION_HEIGHT * lines
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * (w + pad) + pad, rows * (h + cap_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        x, y = pad + c * (w + pad), pad + r * (h + cap_h + pad)
        tile = Image.fromarray(im.astype(np.uint8))
        if scale != 1:
            tile = tile.resize((w, h), Image.NEAREST)
        sheet.paste(tile, (x, y))
        if captions:
            draw.multiline_text((x + 1, y + h), captions[i], fill="black", font=font, spacing=1)
    return sheet


# The formats a picture is written in, by the extension of its file: a still picture, and an
# animation (a PNG with several frames is an APNG; viewers without APNG show its first frame).
STILL = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF"}
ANIMATED = {".gif": "GIF", ".png": "PNG"}


def image_format(path: str | os.PathLike, animated: bool = False) -> str:
    """The Pillow format that `path`'s extension names, or an error saying which ones work."""
    return file_format(path, ANIMATED if animated else STILL, "an animation" if animated else "a picture")


def file_format(path: str | os.PathLike, formats: dict[str, str], what: str) -> str:
    """formats[`path`'s extension], or an error saying that `what` cannot be written so and how it can."""
    suffix = Path(path).suffix.lower()
    if suffix not in formats:
        raise GQNError(
            f"{path}: cannot write {what} as {suffix or 'a file without an extension'}; use {', '.join(formats)}"
        )
    return formats[suffix]


def save_image(image: Image.Image, path: str | os.PathLike) -> str:
    """Save atomically (temporary file, then rename) in the format of the extension; returns the path."""
    kind = image_format(path)
    with atomic_write(path) as f:
        image.save(f, format=kind)
    return os.fspath(path)


def save_animation(frames: np.ndarray, path: str | os.PathLike, fps: int = 12, scale: int = 2) -> str:
    """(N, H, W, 3) uint8 frames, each enlarged `scale` times, as an endlessly looping animation in
    the format of the extension (GIF or animated PNG), written atomically; returns the path."""
    kind = image_format(path, animated=True)
    images = [
        Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in frames
    ]
    with atomic_write(path) as f:
        images[0].save(
            f, format=kind, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
        )
    return os.fspath(path)
