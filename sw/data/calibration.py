"""Calibration sets: images plus the box prompts sent with each.

A COCO-format split gives ground-truth boxes (crowd annotations skipped). A plain image folder has no
boxes, so each image gets a fixed set of generic boxes (whole image, center, four quadrants) that
exercise the decoder over large and medium objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .coco import CocoSplit
from .images import list_images, load_rgb

DEFAULT_MAX_PROMPTS = 16


@dataclass
class CalibItem:
    """One calibration image and its box prompts (original pixels, xyxy)."""

    name: str
    image: np.ndarray
    boxes: np.ndarray


def cap_prompts(boxes: np.ndarray, max_prompts: int, seed: int) -> np.ndarray:
    """At most ``max_prompts`` boxes; a seeded random subset when there are more (SAQ-SAM keeps 16)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if len(boxes) <= max_prompts:
        return boxes
    keep = np.sort(np.random.default_rng(seed).choice(len(boxes), max_prompts, replace=False))
    return boxes[keep]


def generic_boxes(height: int, width: int) -> np.ndarray:
    h, w = float(height - 1), float(width - 1)
    return np.array(
        [
            [0, 0, w, h],
            [w / 4, h / 4, 3 * w / 4, 3 * h / 4],
            [0, 0, w / 2, h / 2],
            [w / 2, 0, w, h / 2],
            [0, h / 2, w / 2, h],
            [w / 2, h / 2, w, h],
        ],
        np.float32,
    )


def calibration_draw(image_ids: list, num_images: int, seed: int) -> list:
    """Which images calibrate: seed 0 takes the first ``num_images`` in file-name order (as the
    reference code takes the first 32 train images); any other seed draws ``num_images`` of the split
    at random (kept in file-name order), so that runs with different seeds measure how much the choice
    of calibration images moves a result."""
    if seed == 0 or num_images >= len(image_ids):
        return list(image_ids[:num_images])
    keep = np.sort(np.random.default_rng(seed).choice(len(image_ids), num_images, replace=False))
    return [image_ids[i] for i in keep]


def items_from_coco(split: CocoSplit, num_images: int, max_prompts: int = DEFAULT_MAX_PROMPTS,
                    seed: int = 0) -> list[CalibItem]:
    """``num_images`` images of the split (``calibration_draw``) with their ground-truth boxes."""
    items = []
    for index, image_id in enumerate(calibration_draw(split.image_ids, num_images, seed)):
        boxes = np.array([inst.box_xyxy for inst in split.instances(image_id)], np.float32).reshape(-1, 4)
        path = split.image_path(image_id)
        items.append(CalibItem(Path(path).name, load_rgb(path), cap_prompts(boxes, max_prompts, seed + index)))
    return items


def items_from_folder(folder: str | Path, num_images: int) -> list[CalibItem]:
    items = []
    for path in list_images(folder, limit=num_images):
        image = load_rgb(path)
        items.append(CalibItem(path.name, image, generic_boxes(*image.shape[:2])))
    return items
