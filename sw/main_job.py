"""The main job (``samhw run``): quantize the default model and show what quantization changed.

It calibrates as every command does (sw/data/sources.py: the given source, else scikit-image's
bundled photographs), segments a few bundled photographs with this project's box prompts and, given a
COCO-format root, also benchmarks its val split. Outputs: ``overlay.png`` (float vs quantized masks),
``summary.json`` and ``summary.md``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .data.sources import CalibOptions
from .eval.metrics import mask_iou
from .models.registry import DEFAULT_MODEL


def _sample_rows(model, qmodel) -> list[dict]:
    from .data.samples import demo_items

    rows = []
    for item in demo_items():
        float_masks, _ = model.predict(item.image, item.boxes)
        quant_masks, _ = qmodel.predict(item.image, item.boxes)
        ious = [mask_iou(f, q) for f, q in zip(float_masks, quant_masks)]
        rows.append(dict(name=item.name, image=item.image, boxes=item.boxes, float_masks=float_masks,
                         quant_masks=quant_masks, ious=ious))
    return rows


def run_main_job(out: str | Path, model_name: str = DEFAULT_MODEL, checkpoint: str | None = None,
                 recipe: str = "minmax", bits: str = "w8a8", calib: CalibOptions = CalibOptions(),
                 data: str | None = None, limit: int | None = None, progress: bool = True) -> dict:
    """Quantize ``model_name``, compare it with the float model on the sample photographs (and on
    ``data``'s val split when given), write the three outputs to ``out``; returns the summary."""
    from .eval.benchmark import evaluate_model
    from .models import load_model
    from .report.overlay import save_overlay
    from .seeding import seed_everything
    from .workflow import quantize_with

    seed_everything(calib.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(model_name, checkpoint)
    calibrated = quantize_with(model, recipe, bits, calib, progress)
    qmodel = calibrated.qmodel
    label = f"{recipe} {bits}"
    summary = {"model": model.name, "recipe": recipe, "bits": bits, "calib_seconds": round(calibrated.seconds, 2)}

    rows = _sample_rows(model, qmodel)
    save_overlay(rows, out / "overlay.png", label)
    summary["samples"] = {r["name"]: [round(v, 4) for v in r["ious"]] for r in rows}
    summary["samples_mean_iou_vs_float"] = round(float(np.mean([v for r in rows for v in r["ious"]])), 4)

    if data:
        from .data.coco import resolve_coco_folder

        split = resolve_coco_folder(data, "val")
        result = evaluate_model(split, qmodel, reference=model, limit_images=limit, progress=progress)
        record = result.to_dict()
        record.pop("per_instance", None)
        summary["benchmark"] = record

    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = [f"# samhw main job: {model.name}, {label}", "",
             f"Calibration: {summary['calib_seconds']} s.", "",
             "| image | IoU of quantized vs float mask, per box |", "|---|---|"]
    lines += [f"| {name} | {', '.join(f'{v:.3f}' for v in ious)} |" for name, ious in summary["samples"].items()]
    if "benchmark" in summary:
        b = summary["benchmark"]
        lines += ["", f"COCO val: AP {b['ap']:.4f}, mIoU vs GT {b['miou_gt']:.4f}, mIoU vs float {b['miou_fp']:.4f}"]
    lines += ["", "![float vs quantized masks](overlay.png)", ""]
    (out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines[:-2]))
    print(f"wrote {out / 'overlay.png'}, {out / 'summary.json'}, {out / 'summary.md'}", file=sys.stderr)
    return summary
