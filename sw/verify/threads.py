"""``samhw verify threads``: does a model's mask output depend on the CPU thread count? The float model
and the fake-quant model on val images (docs/thread_agreement_<recipe>_<bits>.md and a histogram).

The benchmark (ground-truth boxes) runs twice per model in one process: with 1 torch thread and with
``threads`` threads. Only the order of the float32 sums inside the BLAS kernels changes between the two,
so the mean IoU between the two runs' masks is the agreement the float32 model has with itself. For the
float model it is the floor of float32 rounding; for the fake-quant model one activation code flipped by
that rounding cascades through the following blocks (docs/ref_masks_*.md), which bounds how well any
implementation not bit-identical to one particular float32 run can match it, the integer reference included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SamhwError
from .checked import CheckedModelSpec


def _runs(split, model, threads: int, limit: int | None, progress: bool) -> tuple[object, object]:
    """(1-thread result, ``threads``-thread result scored against the 1-thread masks)."""
    import torch

    from ..eval.benchmark import collect_predictions, run_benchmark

    torch.set_num_threads(1)
    single = collect_predictions(split, model.predict, limit_images=limit, progress=progress,
                                 desc=f"{model.name} 1 thread")
    one = run_benchmark(split, single, limit_images=limit, progress=False)
    torch.set_num_threads(threads)
    many = run_benchmark(split, model.predict, reference_masks=single, limit_images=limit, progress=progress,
                         desc=f"{model.name} {threads} threads")
    return one, many


def _box_ious(result) -> list[float]:
    return [r["iou_fp"] for r in result.per_instance]


def _plot(rows: list[tuple[str, object]], threads: int, path: Path) -> None:
    from ..report.figures import saved_figure

    with saved_figure(path, (7, 4), 110) as ax:
        bins = np.linspace(0, 1, 41)
        for label, result in rows:
            ious = _box_ious(result)
            ax.hist(ious, bins=bins, alpha=0.6, label=f"{label} (mean {np.mean(ious):.4f})")
        ax.set_yscale("log")
        ax.set_xlabel(f"mask IoU, {threads} threads vs 1 thread (per box)")
        ax.set_ylabel("boxes")
        ax.legend()


def verify_threads(spec: CheckedModelSpec, command: str, threads: int = 2, limit: int | None = None,
                   out: str | Path | None = None, progress: bool = True) -> Path:
    """Write the report (default docs/thread_agreement_<recipe>_<bits>.md) and its histogram (.png)."""
    import torch

    from .checked import checked_model
    from .report import generated_by, write_report

    if threads < 2:
        raise SamhwError(f"--threads must be at least 2 (got {threads})")
    calib_threads = torch.get_num_threads()
    checked = checked_model(spec, progress)
    cfg = checked.cfg
    split = spec.val_split()
    label_q = f"fake-quant {cfg.recipe} {cfg.bits_name}"
    results = [("float32", _runs(split, checked.model, threads, limit, progress)),
               (label_q, _runs(split, checked.qmodel, threads, limit, progress))]

    out = Path(out or checked.report_path("thread_agreement"))
    plot_path = out.with_suffix(".png")
    _plot([(label, many) for label, (_, many) in results], threads, plot_path)
    calibration = (f"fake-quant state loaded from {Path(spec.quant_state).name}" if spec.quant_state
                   else f"fake-quant calibrated on {len(checked.items)} train images")
    scope = f"the first {limit} images in name order" if limit else "all images"
    first = results[0][1][0]
    lines = [f"# Thread-count agreement: {checked.model.name} float32 and {label_q}", "",
             generated_by(command, calib_threads), "",
             f"coco_tiny val, {scope} ({first.n_images} images), every ground-truth box as a prompt "
             f"({first.n_instances} boxes); {calibration}. Each model "
             f"ran once with 1 torch thread and once with {threads}; the last column is the mean per-box IoU "
             f"between the two runs' masks.", "",
             f"| model | mIoU vs GT, 1 thread | mIoU vs GT, {threads} threads | AP, 1 thread | "
             f"AP, {threads} threads | masks, {threads} vs 1 thread: mean IoU | min |",
             "|---|---|---|---|---|---|---|"]
    for label, (one, many) in results:
        lines.append(f"| {label} | {100 * one.miou_gt:.2f} | {100 * many.miou_gt:.2f} | {100 * one.ap:.2f} | "
                     f"{100 * many.ap:.2f} | {many.miou_fp:.4f} | {min(_box_ious(many)):.4f} |")
    lines += ["", f"![per-box IoU between thread counts]({plot_path.name})", ""]
    write_report(out, lines)
    for line in lines[-len(results) - 3:-3]:
        print(line)
    return out
