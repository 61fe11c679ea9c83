"""The model a verification checks: a calibrated (or saved) fake-quant LiteMedSAM, its float model, the
calibration images, and the integer bundle exported from them.

This module is the only place the verification reports touch the bundle's reading and writing API.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..data.calibration import CalibItem
from ..data.coco import DEFAULT_COCO_ROOT, CocoSplit, resolve_coco_folder
from ..data.sources import CalibOptions
from ..models.base import SegmentModel
from ..quant.config import QuantConfig


@dataclass(frozen=True)
class CheckedModelSpec:
    """Which model to check. ``calib`` (default: ``data``) gives the calibration images, which also set
    the bundle's host-code ranges, so they are loaded even with a ``quant_state``; the checks run on
    ``data``'s val split."""

    model: str = "litemedsam"
    checkpoint: str | None = None
    recipe: str = "minmax"
    bits: str = "w8a8"
    quant_state: str | None = None
    data: str = str(DEFAULT_COCO_ROOT)
    calib: str | None = None
    calib_images: int = 4

    def val_split(self) -> CocoSplit:
        return resolve_coco_folder(self.data, "val")


@dataclass
class CheckedModel:
    spec: CheckedModelSpec
    model: SegmentModel
    qmodel: SegmentModel
    items: list[CalibItem]

    @property
    def cfg(self) -> QuantConfig:
        return self.qmodel.quant_config

    def report_path(self, kind: str) -> Path:
        from .report import default_path

        return default_path(kind, self.cfg.recipe, self.cfg.bits_name)


def checked_model(spec: CheckedModelSpec, progress: bool = True) -> CheckedModel:
    """Seed 0, load the float model, load the calibration images, then load or calibrate the quantized
    model (in that order, so a report reproduces from its command line)."""
    from ..models import load_model
    from ..quant.calibrate import quantize
    from ..quant.config import make_config
    from ..quant.state import load_quant_state
    from ..seeding import seed_everything

    seed_everything(0)
    model = load_model(spec.model, spec.checkpoint)
    items, _ = CalibOptions(spec.calib or spec.data, spec.calib_images).items()
    if spec.quant_state:
        qmodel = load_quant_state(model, spec.quant_state)
    else:
        qmodel, _ = quantize(model, make_config(spec.recipe, spec.bits), items, progress=progress)
    return CheckedModel(spec, model, qmodel, items)


@contextmanager
def exported_bundle(checked: CheckedModel, progress: bool = True) -> Iterator:
    """The bundle of ``checked``, exported into a temporary folder and loaded by the integer reference."""
    from ..export.bundle import export_bundle
    from ..bundle import load_bundle

    with tempfile.TemporaryDirectory() as tmp:
        yield load_bundle(export_bundle(checked.qmodel, checked.items, Path(tmp) / "bundle", progress=progress))
