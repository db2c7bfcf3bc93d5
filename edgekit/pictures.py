"""Drawing and writing pictures: predict's font and warning banner, a PNG (PIL image or matplotlib figure) written atomically."""

from __future__ import annotations

import os
from pathlib import Path


def font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def save_png(image, path: Path) -> None:
    """Written beside and renamed into place: never a half-written picture."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        image.save(tmp, format="PNG")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def save_figure(fig, path: Path) -> None:
    """A matplotlib figure written as PNG beside and renamed into place (never half-written), then closed."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    try:
        fig.savefig(tmp)
        tmp.replace(path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)


def banner(canvas, text: str):
    """The picture with a red strip carrying `text` added above it: a margin, so nothing of the photo
    is covered."""
    from PIL import Image, ImageDraw

    size = max(14, canvas.width // 60)
    face = font(size)
    box = ImageDraw.Draw(canvas).textbbox((0, 0), text, font=face)
    strip = box[3] - box[1] + size
    out = Image.new("RGB", (canvas.width, canvas.height + strip), (180, 0, 0))
    out.paste(canvas, (0, strip))
    ImageDraw.Draw(out).text((size // 2, size // 3), text, fill=(255, 255, 255), font=face)
    return out
