"""The steps the commands share, above every package: only ``sw.cli`` and ``sw.main_job`` import this
module (tests/test_import_graph.py checks it). Packages and the verification reports use the pieces it
composes directly: ``sw.data.sources``, ``sw.quant.calibrate``, ``sw.eval.benchmark``, ``sw.seeding``."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from .data.calibration import CalibItem
from .data.sources import CalibOptions
from .models.base import SegmentModel
from .quant.calibrate import quantize
from .quant.config import make_config
from .quant.state import calibration_metadata


@dataclass
class Calibrated:
    """A calibrated fake-quant model, the images it was calibrated on and the wall-clock seconds taken."""

    qmodel: SegmentModel
    items: list[CalibItem]
    seconds: float

    def metadata(self) -> dict:
        return calibration_metadata(self.seconds, len(self.items))


def quantize_with(model: SegmentModel, recipe: str, bits: str, calib: CalibOptions,
                  progress: bool = True) -> Calibrated:
    """``quantize`` on the images ``calib`` names (sw/data/sources.py states the rule), saying which."""
    cfg = make_config(recipe, bits)  # reject a bad recipe or width before loading any data
    items, described = calib.items()
    print(f"calibrating {cfg.recipe} {cfg.bits_name} on {len(items)} images from {described}", file=sys.stderr)
    qmodel, seconds = quantize(model, cfg, items, progress=progress, seed=calib.seed)
    return Calibrated(qmodel, items, seconds)
