"""Reading user images into the one array format every model expects: uint8 RGB, HxWx3.

Models are written against a single layout, so every odd file format (grayscale, 16-bit, palette,
alpha) is normalised here, once. Anything unreadable becomes a :class:`SamhwError` naming the file,
because a PIL traceback deep inside a benchmark loop does not tell the user which file is broken.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SamhwError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

# Modes whose pixel values are wider than 8 bits; PIL's convert("RGB") clips them instead of scaling,
# which would turn most 16-bit images into a white sheet.
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _wide_to_uint8(img: Image.Image) -> np.ndarray:
    """Scale a >8-bit single-channel image to uint8 instead of clipping it."""
    values = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        # Float images are usually either normalised to [0, 1] or already on a 0..255 scale.
        peak = float(np.nanmax(values)) if values.size else 0.0
        if 0.0 <= peak <= 1.0:
            values = values * 255.0
    elif img.mode.startswith("I;16") or (values.size and values.max() > 255):
        # 16-bit data (PNG 16-bit grayscale may open as "I"): 65535 maps to 255.
        values = values / 257.0
    gray = np.clip(np.nan_to_num(values), 0, 255).round().astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as a uint8 ``HxWx3`` RGB array.

    Grayscale, palette, RGBA/LA (alpha dropped, not composited: the annotations refer to the raw
    colour values) and CMYK images are all converted. EXIF orientation is deliberately *not*
    applied, because COCO-style annotations are drawn on the stored pixel grid.
    """
    path = Path(path)
    if not path.is_file():
        raise SamhwError(f"{path}: image file does not exist")
    try:
        with Image.open(path) as img:
            img.load()  # decode now so truncated files fail here, inside the try
            if img.mode in _WIDE_MODES:
                return _wide_to_uint8(img)
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise SamhwError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    return np.ascontiguousarray(rgb)


def list_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name so runs are reproducible.

    Hidden files (``._x.jpg`` macOS resource forks and the like) are skipped: they carry an image
    suffix but are not images. ``limit`` keeps the first N after sorting.
    """
    folder = Path(folder)
    if not folder.exists():
        raise SamhwError(f"{folder}: image folder does not exist")
    if not folder.is_dir():
        raise SamhwError(f"{folder}: expected an image folder, found a file")
    if limit is not None and limit < 1:
        raise SamhwError(f"{folder}: image limit must be at least 1, got {limit}")
    images = sorted(
        (p for p in folder.iterdir()
         if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.name,
    )
    if not images:
        raise SamhwError(f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return images if limit is None else images[:limit]
