"""Where calibration images come from: one rule for every command that calibrates.

``CalibOptions.source`` is a COCO-format root (its train split, ground-truth boxes, at most
``max_prompts`` per image), a plain image folder (generic boxes), or None: the photographs bundled with
scikit-image. ``images`` takes the first N in file-name order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import SamhwError
from .calibration import DEFAULT_MAX_PROMPTS, CalibItem, items_from_coco, items_from_folder
from .coco import resolve_coco_folder

DEFAULT_CALIB_IMAGES = 32
SAMPLE_PHOTOGRAPHS = "scikit-image sample photographs"
# The rule, as each calibrating command's --help states it.
CALIB_RULE = ("Calibration images: --calib if given (a COCO root: its train split with ground-truth boxes; "
              f"or a folder of images: generic boxes), otherwise the {SAMPLE_PHOTOGRAPHS} bundled with the package")


def is_coco_root(path: str | Path) -> bool:
    return (Path(path) / "annotations").is_dir()


def calibration_items(source: str | Path | None, num_images: int = DEFAULT_CALIB_IMAGES,
                      max_prompts: int = DEFAULT_MAX_PROMPTS, seed: int = 0) -> tuple[list[CalibItem], str]:
    """Calibration images and a description of where they came from (see the module docstring)."""
    if num_images < 1:
        raise SamhwError(f"--calib-images must be at least 1 (got {num_images})")
    if source is None:
        from .samples import calibration_items as sample_items

        return sample_items()[:num_images], SAMPLE_PHOTOGRAPHS
    if is_coco_root(source):
        split = resolve_coco_folder(source, "train")
        return items_from_coco(split, num_images, max_prompts, seed), f"{split.images_dir} (ground-truth boxes)"
    return items_from_folder(source, num_images), f"{source} (generic boxes)"


@dataclass(frozen=True)
class CalibOptions:
    """The calibration options every calibrating command shares (``--calib``, ``--calib-images``,
    ``--max-prompts``, ``--seed``)."""

    source: str | None = None
    images: int = DEFAULT_CALIB_IMAGES
    max_prompts: int = DEFAULT_MAX_PROMPTS
    seed: int = 0

    def items(self) -> tuple[list[CalibItem], str]:
        return calibration_items(self.source, self.images, self.max_prompts, self.seed)
