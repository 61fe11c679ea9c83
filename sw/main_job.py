"""The main job (``samhw run``): quantize the default model and show what quantization changed.

With no data argument it calibrates on scikit-image's bundled photographs and segments a few of them
with this project's box prompts; given a COCO-format root it calibrates on the train split and
benchmarks the val split instead. Outputs: ``overlay.png`` (float vs quantized masks), ``summary.json``
and ``summary.md``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .eval.metrics import mask_iou


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


def run_main_job(args, progress: bool) -> int:
    from .models import load_model
    from .report.overlay import save_overlay
    from .workflow import evaluate, quantize_from_args, seed_everything

    seed_everything(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model, args.checkpoint)
    qmodel, seconds = quantize_from_args(args, model, progress)
    label = f"{args.recipe} {args.bits}"
    summary = {"model": model.name, "recipe": args.recipe, "bits": args.bits, "calib_seconds": round(seconds, 2)}

    rows = _sample_rows(model, qmodel)
    save_overlay(rows, out / "overlay.png", label)
    summary["samples"] = {r["name"]: [round(v, 4) for v in r["ious"]] for r in rows}
    summary["samples_mean_iou_vs_float"] = round(float(np.mean([v for r in rows for v in r["ious"]])), 4)

    if args.data:
        from .data.coco import resolve_coco_folder

        split = resolve_coco_folder(args.data, "val")
        result = evaluate(split, qmodel, reference=model, limit_images=args.limit, progress=progress)
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
        lines += ["", f"COCO val: AP {b['ap']:.4f}, mIoU vs GT {b['miou_gt']:.4f}, mIoU vs float {b['miou_ref']:.4f}"]
    lines += ["", "![float vs quantized masks](overlay.png)", ""]
    (out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines[:-2]))
    print(f"wrote {out / 'overlay.png'}, {out / 'summary.json'}, {out / 'summary.md'}", file=sys.stderr)
    return 0
