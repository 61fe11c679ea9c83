"""The main job (``samhw run``): quantize the default model and show what quantization changed.

It calibrates as every command does (sw/data/sources.py: the given source, else scikit-image's
bundled photographs), segments a few bundled photographs with this project's box prompts and, given a
COCO-format root, also benchmarks its val split. Then the whole chain to the accelerator: it exports the
integer bundle (``bundle/``), compiles it for the core (``program/``) and runs the first sample
photograph (``--accelerator-images``) through the whole model on the core's functional model, every layer
checked against sw/ref (``hw/runtime``). Outputs: ``overlay.png`` (float vs quantized masks),
``accelerator.png`` (float vs accelerator masks), ``summary.json`` and ``summary.md`` (with the
accelerator's cycles and estimated latency).
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


def _accelerator(out: Path, qmodel, items, rows: list[dict], images: int, progress: bool) -> dict:
    """Export the calibrated model's bundle, compile it for the core and run the first ``images`` sample
    photographs through the whole model on the fsim backend (every layer checked against sw/ref, the
    logits also against sw/ref run alone); writes ``accelerator.png`` (float vs accelerator masks)."""
    import time

    import torch

    from hw.compiler.model import compile_bundle
    from hw.compiler.store import write_program
    from hw.core.config import load_core_config
    from hw.runtime import DEFAULT_CLOCK_MHZ, FsimBackend, latency_ms, reference_model
    from hw.runtime.threads import single_blas_thread

    from .bundle import load_bundle
    from .export.bundle import export_bundle
    from .infer import DEFAULT_CORE, infer_image
    from .report.overlay import save_overlay

    start = time.perf_counter()
    # Host-code ranges from the first calibration photograph (the one run below): the whole calibration set
    # would take as long again as the calibration did.
    bundle = load_bundle(export_bundle(qmodel, items[:1], out / "bundle", progress=False))
    config = load_core_config(DEFAULT_CORE)
    program = compile_bundle(bundle, config)
    write_program(program, out / "program")
    prepared = time.perf_counter() - start
    backend = FsimBackend(check_hazards="never")   # the per-layer comparison with sw/ref checks the results
    backend.open(program)
    record = {"backend": "fsim", "core": DEFAULT_CORE, "core_digest": config.digest, "bundle": str(out / "bundle"),
              "program": str(out / "program"), "invocations": len(program.invocations),
              "export_compile_seconds": round(prepared, 1), "clock_mhz": DEFAULT_CLOCK_MHZ, "images": []}
    overlay = []
    for row in rows[:images]:
        inf = infer_image(qmodel, bundle, program, backend, row["image"], row["boxes"], progress, opened=True,
                          float_masks=row["float_masks"])
        with torch.no_grad():
            x, meta = qmodel.preprocess(row["image"])
            boxes = qmodel.boxes_to_input(np.asarray(row["boxes"], np.float32), meta)
        with single_blas_thread():
            _, logits, iou = reference_model(bundle, x.double().numpy(), boxes.double().numpy(), program=program)
        run = inf.run
        ious = [mask_iou(f, a) for f, a in zip(row["float_masks"], inf.masks)]
        record["images"].append({
            "name": row["name"], "boxes": len(row["boxes"]), "invocation_runs": run.runs,
            "outputs_compared": run.elements, "mismatches": run.mismatches,
            "masks_identical_to_reference": bool(np.array_equal(logits, run.logits) and np.array_equal(iou, run.iou)),
            "cycles": run.cycles, "encoder_cycles": run.cycles_of("encoder"), "decoder_cycles": run.cycles_of("decoder"),
            "latency_ms": round(latency_ms(run.cycles), 2), "iou_vs_float": [round(v, 4) for v in ious],
            "seconds": round(inf.seconds, 1)})
        overlay.append(dict(name=row["name"], image=row["image"], boxes=row["boxes"], float_masks=row["float_masks"],
                            quant_masks=inf.masks, ious=ious))
    if overlay:
        save_overlay(overlay, out / "accelerator.png", "accelerator (fsim)")
    record["ok"] = all(i["mismatches"] == 0 and i["masks_identical_to_reference"] for i in record["images"])
    return record


def _accelerator_lines(acc: dict) -> list[str]:
    lines = ["", f"## The quantized model on the accelerator ({acc['backend']} backend, core {acc['core']})", "",
             f"Exported to `{acc['bundle']}` (host-code ranges from the first calibration photograph), compiled to "
             f"`{acc['program']}` ({acc['invocations']} layer invocations) "
             f"in {acc['export_compile_seconds']} s; every quantized layer ran on the functional model of the core "
             "and its output codes were compared with sw/ref's, and the mask logits with sw/ref run alone. Latency: "
             f"cycles at {acc['clock_mhz']:g} MHz.", "",
             "| image | boxes | output codes compared | mismatches | masks identical to sw/ref | cycles (encoder + "
             "decoder) | latency ms | IoU vs float, per box | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for i in acc["images"]:
        lines.append(f"| {i['name']} | {i['boxes']} | {i['outputs_compared']} | {i['mismatches']} | "
                     f"{'yes' if i['masks_identical_to_reference'] else 'NO'} | {i['cycles']} ({i['encoder_cycles']} + "
                     f"{i['decoder_cycles']}) | {i['latency_ms']:.1f} | {', '.join(f'{v:.3f}' for v in i['iou_vs_float'])} "
                     f"| {i['seconds']:.0f} |")
    if acc["images"]:
        lines += ["", "![float vs accelerator masks](accelerator.png)"]
    return lines


def run_main_job(out: str | Path, model_name: str = DEFAULT_MODEL, checkpoint: str | None = None,
                 recipe: str = "minmax", bits: str = "w8a8", calib: CalibOptions = CalibOptions(),
                 data: str | None = None, limit: int | None = None, progress: bool = True,
                 accelerator_images: int = 1) -> dict:
    """Quantize ``model_name``, compare it with the float model on the sample photographs (and on
    ``data``'s val split when given), run the first ``accelerator_images`` photographs through the whole
    quantized model on the core's functional model, write the outputs to ``out``; returns the summary."""
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

    if accelerator_images > 0:
        summary["accelerator"] = _accelerator(out, qmodel, calibrated.items, rows, accelerator_images, progress)

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
    lines += ["", "![float vs quantized masks](overlay.png)"]
    if "accelerator" in summary:
        lines += _accelerator_lines(summary["accelerator"])
    lines += [""]
    (out / "summary.md").write_text("\n".join(lines))
    print("\n".join(line for line in lines if not line.startswith("![")))
    print(f"wrote {out / 'overlay.png'}, {out / 'summary.json'}, {out / 'summary.md'}", file=sys.stderr)
    return summary
