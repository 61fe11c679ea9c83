"""Can the softmax move on chip without costing accuracy? The integer softmax (sw/ref/log_softmax.py)
against the host's float step, on the val images with their ground-truth boxes.

    python scripts/log_softmax_study.py --bundle runs/bundle_ahcptq_w4a4 --limit 80 --workers 2 \
        --out docs/log_softmax_ahcptq_w4a4.md

Per image the whole-model reference runs twice: with the host's float softmax (its codes compared, at
every attention and on the same scores, with the integer softmax's at each setting of SETTINGS) and with
the integer softmax at the default setting. Both sets of masks are scored against the ground truth as
the benchmark scores a model. Writes the report and a plot of the per-layer agreement next to it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sw.ref.log_softmax import EXP_BITS, FRAC_BITS, LOG_BITS, LogSoftmaxLayers  # noqa: E402
from sw.ref.steps import IntegerLayers  # noqa: E402

# (F, E, G): fraction bits of the logits, bits of 2^-d, mantissa bits of the logarithm
SETTINGS = ((6, 14, 6), (8, 16, 8), (10, 20, 10), (12, 24, 12))
DEFAULT = (FRAC_BITS, EXP_BITS, LOG_BITS)
assert DEFAULT in SETTINGS


class Agreement(IntegerLayers):
    """The float host step, with every attention's codes compared to the integer softmax's."""

    def __init__(self):
        self.counts: dict[tuple, dict[str, list[int]]] = {s: {} for s in SETTINGS}
        self.units = {s: LogSoftmaxLayers(*s) for s in SETTINGS}

    def probabilities(self, layer, scores, q):
        ref = super().probabilities(layer, scores, q)
        for s, units in self.units.items():
            diff = np.abs(units.unit(layer).codes(scores, q) - ref)
            c = self.counts[s].setdefault(layer.name, [0, 0, 0])
            c[0] += diff.size
            c[1] += int((diff == 0).sum())
            c[2] = max(c[2], int(diff.max(initial=0)))
        return ref


_state: dict = {}


def image_row(image_id: int):
    import torch

    from sw.data.images import load_rgb
    from sw.ref.run import decode_masks, encode_image
    from sw.verify.masks import decoded_masks, mask_ious

    torch.set_num_threads(1)
    split, model, bundle = _state["split"], _state["model"], _state["bundle"]
    boxes = np.array([i.box_xyxy for i in split.instances(image_id)], np.float32).reshape(-1, 4)
    if not len(boxes):
        return image_id, None
    with torch.no_grad():
        x, meta = model.preprocess(load_rgb(split.image_path(image_id)))
        box_in = model.boxes_to_input(boxes, meta).double().numpy()
    x = x.double().numpy()
    start = time.perf_counter()

    def masks(layers):
        decode = lambda e, b: decode_masks(bundle, e, b, layers)  # noqa: E731
        return decoded_masks(model, meta, decode, encode_image(bundle, x, layers), box_in)

    agree = Agreement()
    host, chip = masks(agree), masks(LogSoftmaxLayers())
    return image_id, {"counts": agree.counts, "host": host, "chip": chip, "iou": mask_ious(host[0], chip[0]),
                      "seconds": time.perf_counter() - start}


def _pct(n: int, d: int) -> str:
    return f"{100 * n / d:.3f}" if d else "—"


def _merge(rows) -> dict:
    total: dict[tuple, dict[str, list[int]]] = {s: {} for s in SETTINGS}
    for r in rows:
        for s, layers in r["counts"].items():
            for name, (n, same, worst) in layers.items():
                t = total[s].setdefault(name, [0, 0, 0])
                t[0] += n
                t[1] += same
                t[2] = max(t[2], worst)
    return total


def _plot(total: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(total[DEFAULT])
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(SETTINGS)
    for i, s in enumerate(SETTINGS):
        y = [100 * (1 - total[s][n][1] / total[s][n][0]) for n in names]
        label = f"F={s[0]}, E={s[1]}, G={s[2]}" + (" (default)" if s == DEFAULT else "")
        ax.bar(np.arange(len(names)) + i * width, y, width, label=label)
    ax.set_xticks(np.arange(len(names)) + width * (len(SETTINGS) - 1) / 2)
    ax.set_xticklabels([n.replace("image_encoder.", "enc.").replace("mask_decoder.transformer.", "dec.")
                        .replace(".attn", "") for n in names], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("codes that differ from the float step (%)")
    ax.set_yscale("log")
    fig.suptitle("Integer softmax vs the host's float softmax, same scores")
    ax.legend(fontsize=8, ncol=len(SETTINGS), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default="runs/bundle_ahcptq_w4a4")
    p.add_argument("--data", default=None, help="COCO root (default ../shared/data/coco_tiny)")
    p.add_argument("--limit", type=int, default=80, help="first N val images")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default="docs/log_softmax_ahcptq_w4a4.md")
    args = p.parse_args()

    from tqdm import tqdm

    from sw.atomic_file import write_atomic
    from sw.bundle import load_bundle
    from sw.data.coco import DEFAULT_COCO_ROOT, resolve_coco_folder
    from sw.eval.benchmark import run_benchmark, select_images
    from sw.models import load_model

    start = time.perf_counter()
    bundle = load_bundle(args.bundle)
    split = resolve_coco_folder(args.data or DEFAULT_COCO_ROOT, "val")
    images = select_images(split, args.limit)
    _state.update(bundle=bundle, split=split, model=load_model(bundle.header.model, None))
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        done = list(tqdm(pool.imap(image_row, images), total=len(images), desc="images", unit="img"))
    rows = {i: r for i, r in done if r is not None}
    total = _merge(rows.values())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot = out.with_suffix(".png")
    _plot(total, plot)

    acc = {}
    for key in ("host", "chip"):
        acc[key] = run_benchmark(split, {i: r[key] for i, r in rows.items()}, limit_images=len(images),
                                 progress=False)
    ious = [v for r in rows.values() for v in r["iou"]]
    default = DEFAULT
    n_all = sum(v[0] for v in total[default].values())
    same_all = sum(v[1] for v in total[default].values())
    command = "python scripts/log_softmax_study.py " + " ".join(sys.argv[1:])
    lines = [f"# Integer softmax vs the host's float softmax: {Path(args.bundle).name}", "",
             f"Generated by `{command}` in {time.perf_counter() - start:.0f} s; do not edit by hand.", "",
             "The softmax between QK^T and A.V is a host step today (`sw/ref/layers.probabilities_from_scores`: "
             "float64 exp and log2, then the AGQ code). `sw/ref/log_softmax.py` defines it in integer arithmetic "
             "in the log domain, as an on-chip unit would compute it: the logits to fixed point with F fraction "
             "bits (a bundle multiplier, TinyViT's bias rounded to the same units), the row's maximum, one "
             "shift-and-LUT 2^-d per key (E bits) for the row's sum, one logarithm per row (a LUT on G mantissa "
             "bits), and per key an add, a multiply by tau (a shift) and a rounding: no division and no "
             "exponential of the codes themselves.", "",
             f"First {len(images)} val images, {len(rows)} with ground-truth boxes ({len(ious)} boxes). Per "
             "image the whole-model reference (`sw/ref/run.py`) runs with the float step, comparing the integer "
             "softmax's codes with the float step's on the same scores at every attention; then again with the "
             f"integer softmax (F={default[0]}, E={default[1]}, G={default[2]}, the default) in its place.", "",
             "## Codes on the same scores", "",
             "| F | E | G | LUT entries (2^-d, log2) | codes compared | identical (%) | largest difference |",
             "|---|---|---|---|---|---|---|"]
    for s in SETTINGS:
        n = sum(v[0] for v in total[s].values())
        same = sum(v[1] for v in total[s].values())
        worst = max(v[2] for v in total[s].values())
        lines.append(f"| {s[0]} | {s[1]} | {s[2]} | {2 ** s[0]}, {2 ** s[2]} | {n:,} | {_pct(same, n)} | {worst} |")
    lines += ["", f"Per layer at the default (F={default[0]}, E={default[1]}, G={default[2]}):", "",
              "| attention | codes compared | identical (%) | largest difference |", "|---|---|---|---|"]
    for name, (n, same, worst) in total[default].items():
        lines.append(f"| {name} | {n:,} | {_pct(same, n)} | {worst} |")
    lines += ["", f"![per-layer agreement]({plot.name})", "",
              "## Task accuracy", "",
              "The same masks scored against the ground truth as the benchmark scores a model "
              "(`sw/eval/benchmark.py`). A flipped code cascades through the following blocks of this W4A4 model, "
              "so masks of the two runs differ by more than the codes do; how far the model's accuracy moves "
              "under a 1e-6 input perturbation alone is in the noise row of "
              f"[ref_masks_{'_'.join(Path(args.bundle).name.split('_')[1:])}.md]"
              f"(ref_masks_{'_'.join(Path(args.bundle).name.split('_')[1:])}.md).", "",
              "| softmax | mIoU vs ground truth (%) | mask AP (%) | AP50 (%) |", "|---|---|---|---|"]
    for key, label in (("host", "float host step (the reference today)"),
                       ("chip", f"integer (F={default[0]}, E={default[1]}, G={default[2]})")):
        r = acc[key]
        lines.append(f"| {label} | {100 * r.miou_gt:.2f} | {100 * r.ap:.2f} | {100 * r.ap50:.2f} |")
    lines += ["", f"Mask IoU between the two runs' masks: mean {np.mean(ious):.4f} over {len(ious)} boxes, lowest "
              f"{np.min(ious):.4f}; codes identical on the same scores: {_pct(same_all, n_all)} %.", ""]
    write_atomic(out, "\n".join(lines).encode())
    print(f"wrote {out} and {plot}: identical codes {_pct(same_all, n_all)} %, mIoU vs GT "
          f"{100 * acc['host'].miou_gt:.2f} (float) / {100 * acc['chip'].miou_gt:.2f} (integer)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
