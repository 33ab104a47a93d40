"""Image grids with captions, written as PNG files.

Shapes: N images, H x W pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


def save_png(image: Image.Image, path: str | os.PathLike) -> str:
    """Save atomically (temporary file, then rename); returns the path."""
    with atomic_write(path) as f:
        image.save(f, format="PNG")
    return os.fspath(path)
