"""Real photographs bundled with scikit-image, for a main job that needs no data download.

Each demo image comes with box prompts chosen by this project around a clearly visible object; the
calibration set adds further bundled photographs with generic boxes.
"""

from __future__ import annotations

import numpy as np

from .calibration import CalibItem, generic_boxes

# name -> boxes (x0, y0, x1, y1) in original pixels
DEMO_BOXES: dict[str, list[list[float]]] = {
    "astronaut": [[150, 20, 330, 230], [365, 335, 511, 511]],
    "chelsea": [[60, 10, 400, 299]],
    "coffee": [[120, 20, 480, 390]],
    "rocket": [[290, 80, 380, 420]],
}
CALIBRATION_ONLY = ("retina", "hubble_deep_field", "immunohistochemistry", "camera", "coins", "horse")


def _load(name: str) -> np.ndarray:
    from skimage import data

    image = np.asarray(getattr(data, name)())
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.stack([image] * 3, -1)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


def demo_items() -> list[CalibItem]:
    return [CalibItem(name, _load(name), np.asarray(boxes, np.float32)) for name, boxes in DEMO_BOXES.items()]


def calibration_items() -> list[CalibItem]:
    """Every bundled sample photograph with generic boxes plus the demo boxes where defined."""
    items = []
    for name in (*DEMO_BOXES, *CALIBRATION_ONLY):
        image = _load(name)
        boxes = generic_boxes(*image.shape[:2])
        if name in DEMO_BOXES:
            boxes = np.concatenate([np.asarray(DEMO_BOXES[name], np.float32), boxes])
        items.append(CalibItem(name, image, boxes))
    return items
