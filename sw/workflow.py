"""The steps the CLI and the scripts share: pick calibration data, quantize, evaluate."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from .data.calibration import DEFAULT_MAX_PROMPTS, CalibItem, items_from_coco, items_from_folder
from .data.coco import CocoSplit, resolve_coco_folder
from .errors import SamhwError
from .eval.benchmark import BenchmarkResult, collect_predictions, run_benchmark
from .models.base import SegmentModel
from .quant.calibrate import calibrate
from .quant.config import QuantConfig, make_config
from .quant.prepare import quantize_model

DEFAULT_CALIB_IMAGES = 32


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def is_coco_root(path: str | Path) -> bool:
    return (Path(path) / "annotations").is_dir()


def calibration_items(source: str | Path | None, num_images: int = DEFAULT_CALIB_IMAGES,
                      max_prompts: int = DEFAULT_MAX_PROMPTS, seed: int = 0) -> tuple[list[CalibItem], str]:
    """Calibration images from a COCO root (its train split, ground-truth boxes), a plain image folder
    (generic boxes), or, with no source, the photographs bundled with scikit-image."""
    if num_images < 1:
        raise SamhwError(f"--calib-images must be at least 1 (got {num_images})")
    if source is None:
        from .data.samples import calibration_items as sample_items

        return sample_items()[:num_images], "scikit-image sample photographs"
    if is_coco_root(source):
        split = resolve_coco_folder(source, "train")
        return items_from_coco(split, num_images, max_prompts, seed), f"{split.images_dir} (ground-truth boxes)"
    return items_from_folder(source, num_images), f"{source} (generic boxes)"


def quantize(model: SegmentModel, cfg: QuantConfig, items: list[CalibItem],
             progress: bool = True, seed: int = 0) -> tuple[SegmentModel, float]:
    """A calibrated fake-quant copy of ``model`` and the calibration wall-clock seconds."""
    qmodel = quantize_model(model, cfg)
    seconds = calibrate(qmodel, items, progress=progress, fp_model=model, seed=seed)
    return qmodel, seconds


def quantize_from_args(args, model: SegmentModel, progress: bool = True) -> tuple[SegmentModel, float]:
    """``quantize`` with the CLI's calibration options; ``--calib`` defaults to ``--data``."""
    cfg = make_config(args.recipe, args.bits)  # reject a bad recipe or width before loading any data
    source = args.calib if args.calib else getattr(args, "data", None)
    items, described = calibration_items(source, args.calib_images, args.max_prompts, args.seed)
    print(f"calibrating {cfg.recipe} {cfg.bits_name} on {len(items)} images from {described}", file=sys.stderr)
    return quantize(model, cfg, items, progress=progress, seed=args.seed)


def evaluate(split: CocoSplit, model: SegmentModel, reference: SegmentModel | None = None,
             reference_masks: dict | None = None, detections: dict | None = None,
             limit_images: int | None = None, progress: bool = True) -> BenchmarkResult:
    """Benchmark ``model``; against a float ``reference`` too (or its precomputed masks)."""
    if reference is not None and reference_masks is None:
        reference_masks = collect_predictions(split, reference.predict, detections=detections,
                                              limit_images=limit_images, progress=progress, desc="float reference")
    return run_benchmark(split, model.predict, reference_masks=reference_masks, detections=detections,
                         limit_images=limit_images, progress=progress, desc=f"eval {model.name}")


def add_checked_model_args(p, default_data: str) -> None:
    """Options of the scripts that check one calibrated model against the integer reference."""
    p.add_argument("--model", default="litemedsam")
    p.add_argument("--recipe", default="minmax")
    p.add_argument("--bits", default="w8a8")
    p.add_argument("--quant-state", help="calibrated state (skips calibration; --recipe/--bits come from it)")
    p.add_argument("--data", default=default_data)
    p.add_argument("--calib-images", type=int, default=4, help="calibration images (also set the host-code ranges)")


def checked_model(args) -> tuple[SegmentModel, SegmentModel, list[CalibItem]]:
    """(float model, calibrated model, calibration items) for ``add_checked_model_args`` options; the
    items also set the bundle's host-code ranges, so they are loaded even with a saved state."""
    from .models import load_model
    from .quant.state import load_quant_state

    seed_everything(0)
    model = load_model(args.model)
    items, _ = calibration_items(args.data, args.calib_images)
    if args.quant_state:
        return model, load_quant_state(model, args.quant_state), items
    return model, quantize(model, make_config(args.recipe, args.bits), items)[0], items
