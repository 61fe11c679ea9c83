"""Masks from the numpy integer reference vs the fake-quant model, on coco_tiny val with ground-truth boxes.

Calibrates LiteMedSAM with a recipe (or loads a state from 'samhw quantize'), exports the bundle, then
for each val image computes the masks twice: with the whole-model integer reference (sw/ref/run.py:
numpy only, from the bundle) and with the fake-quant model, both postprocessed by the model's own
postprocess as the benchmark does, and reports the mask IoU between them. For scale, two more columns:
the fake-quant model against itself with 1e-6 Gaussian noise added to the preprocessed image (its own
code-level sensitivity, which bounds any whole-model agreement), and the reference's decoder against
the host-emulating fake-quant decoder (sw/export/host_emulation.py) from the same fake-quant embedding.
Last, the whole reference against the fake-quant model's own graph with the bundle's integer kernels
doing the quantized layers' arithmetic (``integer_kernel_model``): that isolates the reference's
rewrite of the graph. Then the reference's, the fake-quant model's and the noisy fake-quant model's masks
are each scored against the ground truth (mIoU, mask AP) as the benchmark scores a model, which says
whether the hardware reaches the accuracy the fake-quant model reports. Writes
docs/ref_masks_<recipe>_<bits>.md.

    python scripts/ref_masks.py --recipe minmax --bits w8a8 --calib-images 4 --limit 5
    python scripts/ref_masks.py --quant-state runs/states/ahcptq_w4a4.safetensors --limit 5
    python scripts/ref_masks.py --recipe minmax --bits w8a8 --calib-images 4 --limit 80 --workers 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sw.cli import DEFAULT_DATA  # noqa: E402
from sw.workflow import add_checked_model_args  # noqa: E402

PROMPT_BATCH = 4  # as SegmentModel.predict, so the fake-quant masks are the benchmark's
NOISE = 1e-6


def _masks(model, meta, decode, embedding, boxes) -> tuple[np.ndarray, np.ndarray]:
    """Bool masks at the original size and predicted IoU, for ``decode(embedding, boxes) -> (logits, iou)``."""
    import torch

    chunks = [decode(embedding, boxes[i:i + PROMPT_BATCH]) for i in range(0, len(boxes), PROMPT_BATCH)]
    logits = torch.cat([torch.as_tensor(np.asarray(c[0])).float() for c in chunks])
    iou = np.concatenate([np.asarray(c[1], np.float64).reshape(-1) for c in chunks])
    return (model.postprocess(logits, meta) > 0).numpy(), iou


def _ious(a: np.ndarray, b: np.ndarray) -> list[float]:
    from sw.eval.metrics import mask_iou

    return [mask_iou(x, y) for x, y in zip(a, b)]


def _image_row(qmodel, emulated, kernels, bundle, image, boxes_xyxy) -> dict:
    import torch

    from sw.ref.run import decode_masks, encode_image

    x, meta = qmodel.preprocess(image)
    boxes = qmodel.boxes_to_input(boxes_xyxy, meta)
    with torch.inference_mode():
        emb = qmodel.encode(x)
        fq = _masks(qmodel, meta, qmodel.decode, emb, boxes)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)) * NOISE
        noisy = _masks(qmodel, meta, qmodel.decode, qmodel.encode(x + noise), boxes)
        emulated_decode = lambda e, b: emulated.decode(e.double(), b.double())  # noqa: E731
        emulated_dec = _masks(qmodel, meta, emulated_decode, emb, boxes)
        emulated_all = _masks(qmodel, meta, emulated_decode, emulated.encode(x.double()), boxes)
        kernels_decode = lambda e, b: kernels.decode(e.double(), b.double())  # noqa: E731
        kernels_all = _masks(qmodel, meta, kernels_decode, kernels.encode(x.double()), boxes)
    ref_decode = lambda e, b: decode_masks(bundle, e, b.numpy())  # noqa: E731
    start = time.perf_counter()
    ref = _masks(qmodel, meta, ref_decode, encode_image(bundle, x.numpy()), boxes)
    seconds = time.perf_counter() - start
    ref_dec = _masks(qmodel, meta, ref_decode, emb.double().numpy(), boxes)
    return {"ref": _ious(ref[0], fq[0]), "noisy": _ious(noisy[0], fq[0]), "emulated": _ious(ref[0], emulated_all[0]),
            "decoder": _ious(ref_dec[0], emulated_dec[0]), "kernels": _ious(ref[0], kernels_all[0]),
            "seconds": seconds, "predictions": {"fake-quant": fq, "fake-quant + 1e-6 noise": noisy,
                                                 "integer reference": ref}}


class _Serial:
    """``Pool`` stand-in for --workers 1: the same loop in this process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def imap(fn, items):
        return map(fn, items)


def _table(rows: list[tuple[str, dict]]) -> list[str]:
    lines = ["| image | boxes | ref vs fake-quant: mean IoU | min | fake-quant + 1e-6 noise vs fake-quant | "
             "whole model: ref vs host-emulating fake-quant | decoder only: ref vs host-emulating (same embedding) | "
             "whole model: ref vs fake-quant graph on integer kernels | min | reference s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {len(r['ref'])} | {np.mean(r['ref']):.4f} | {np.min(r['ref']):.4f} | "
                     f"{np.mean(r['noisy']):.4f} | {np.mean(r['emulated']):.4f} | {np.mean(r['decoder']):.4f} | "
                     f"{np.mean(r['kernels']):.4f} | {np.min(r['kernels']):.4f} | {r['seconds']:.1f} |")
    return lines


def _accuracy_table(split, predictions: dict, images: list[int]) -> list[str]:
    from sw.eval.benchmark import run_benchmark

    lines = ["| masks from | mIoU vs ground truth (%) | mask AP (%) | AP50 (%) |", "|---|---|---|---|"]
    for source in next(iter(predictions.values())):
        per_image = {image_id: p[source] for image_id, p in predictions.items()}
        # Images without boxes still enter AP (their ground truth is missed), as in the benchmark.
        result = run_benchmark(split, per_image, limit_images=len(images), progress=False)
        lines.append(f"| {source} | {100 * result.miou_gt:.2f} | {100 * result.ap:.2f} | {100 * result.ap50:.2f} |")
    return lines


# Set before the worker processes fork, so each inherits the calibrated models instead of pickling them.
_SHARED: dict = {}


def _row_of_image(image_id):
    """(image id, file name, row) of one val image, or None when it has no boxes."""
    import torch

    from sw.data.images import load_rgb

    torch.set_num_threads(1)
    split, qmodel = _SHARED["split"], _SHARED["qmodel"]
    boxes = np.array([i.box_xyxy for i in split.instances(image_id)], np.float32).reshape(-1, 4)
    if not len(boxes):
        return None
    image = load_rgb(split.image_path(image_id))
    row = _image_row(qmodel, _SHARED["emulated"], _SHARED["kernels"], _SHARED["bundle"], image, boxes)
    return image_id, split.image_info(image_id)["file_name"], row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checked_model_args(p, str(DEFAULT_DATA))
    p.add_argument("--limit", type=int, default=5, help="val images (name order)")
    p.add_argument("--workers", type=int, default=1, help="processes, one image each at a time (one thread each)")
    p.add_argument("--out", help="report path (default docs/ref_masks_<recipe>_<bits>.md)")
    args = p.parse_args(argv)

    import torch
    from tqdm import tqdm

    from sw.data.coco import resolve_coco_folder
    from sw.eval.benchmark import select_images
    from sw.export.bundle import export_bundle
    from sw.export.host_emulation import host_emulating_model, integer_kernel_model
    from sw.ref.bundle import load_bundle
    from sw.workflow import checked_model

    torch.set_num_threads(1)
    model, qmodel, items = checked_model(args)
    cfg = qmodel.quant_config
    split = resolve_coco_folder(args.data, "val")
    rows, skipped, predictions = [], 0, {}
    with tempfile.TemporaryDirectory() as tmp:
        bundle = load_bundle(export_bundle(qmodel, items, Path(tmp) / "bundle"))
        _SHARED.update(split=split, qmodel=qmodel, bundle=bundle, emulated=host_emulating_model(qmodel, bundle),
                       kernels=integer_kernel_model(qmodel, bundle))
        images = select_images(split, args.limit)
        with multiprocessing.get_context("fork").Pool(args.workers) if args.workers > 1 else _Serial() as pool:
            for result in tqdm(pool.imap(_row_of_image, images), total=len(images), desc="ref vs fake-quant", unit="img"):
                if result is None:
                    skipped += 1
                else:
                    image_id, name, row = result
                    predictions[image_id] = row.pop("predictions")
                    rows.append((name, row))

    accuracy = _accuracy_table(split, predictions, images)
    every = lambda key: [v for _, r in rows for v in r[key]]  # noqa: E731
    summary = (f"Mean over {len(rows)} images: ref vs fake-quant {np.mean([np.mean(r['ref']) for _, r in rows]):.4f} "
               f"(over {len(every('ref'))} boxes: {np.mean(every('ref')):.4f}); fake-quant with 1e-6 input noise vs "
               f"fake-quant {np.mean(every('noisy')):.4f}; whole model, ref vs host-emulating fake-quant "
               f"{np.mean([np.mean(r['emulated']) for _, r in rows]):.4f}; decoder only, ref vs host-emulating "
               f"{np.mean(every('decoder')):.4f} (per box); whole model, ref vs fake-quant graph on integer kernels "
               f"{np.mean([np.mean(r['kernels']) for _, r in rows]):.4f} (over boxes {np.mean(every('kernels')):.4f}, "
               f"lowest box {np.min(every('kernels')):.4f}).")
    calibration = (f"Fake-quant state {Path(args.quant_state).name}; host-code ranges from {len(items)} coco_tiny "
                   "train images" if args.quant_state else
                   f"Calibration and host-code ranges: {len(items)} coco_tiny train images")
    command = " ".join(["python scripts/ref_masks.py"] + (argv if argv is not None else sys.argv[1:]))
    text = "\n".join([
        f"# Whole-model integer reference vs fake-quant masks: {model.name} {cfg.recipe} {cfg.bits_name}", "",
        f"Generated by `{command}`; do not edit by hand.", "",
        f"{calibration}. Checked on the first {args.limit} val "
        f"images with all their ground-truth boxes ({skipped} without boxes skipped). Masks are the model's "
        "postprocessed logits > 0 at the original image size; IoU per box, averaged per image.", "",
        "- **ref vs fake-quant**: `sw.ref.run` (numpy, integer layers from the bundle, host steps in float64) against "
        "the float32 fake-quant model.",
        "- **fake-quant + 1e-6 noise**: the fake-quant model against itself with N(0, 1e-6) added to the preprocessed "
        "image. One flipped activation code cascades through the following blocks, so this is the agreement any "
        "whole-model implementation that is not bit-identical to the fake-quant float32 arithmetic can expect; the "
        "reference's 16-bit host codes are such a difference.",
        "- **whole model: ref vs host-emulating fake-quant**: the reference against the fake-quant model run the "
        "way the reference computes (`sw/export/host_emulation.py`: float64, integer weights times scale exact, host "
        "outputs rounded to their 16-bit codes), encoder and decoder.",
        "- **decoder only**: reference decoder against the host-emulating fake-quant decoder "
        "(`sw/export/host_emulation.py`: float64, host outputs rounded to their 16-bit codes), both from the "
        "fake-quant image embedding.",
        "- **whole model: ref vs fake-quant graph on integer kernels**: the reference against the fake-quant "
        "model's own modules run in float64 with every quantized layer's arithmetic done by the bundle's integer "
        "kernels and each A.V requantized with the bundle's multiplier (`integer_kernel_model` in "
        "`sw/export/host_emulation.py`). Only the graph differs: the torch modules' wiring and host steps against "
        "the reference's rewrite of them. The kernels' own arithmetic is checked layer by layer against the float32 "
        "fake-quant model in docs/crosscheck_*.md.", "",
        *_table(rows), "", summary, "",
        "## Task accuracy of each set of masks", "",
        "The same masks scored against the ground truth as the benchmark scores a model (`sw/eval/benchmark.py`: "
        "mIoU per box, COCO mask AP with the predicted IoU as score). The noise row is how far the fake-quant "
        "model's own accuracy moves under a 1e-6 input perturbation.", "",
        *accuracy, ""])
    out = Path(args.out or ROOT / "docs" / f"ref_masks_{cfg.recipe}_{cfg.bits_name.lower()}.md")
    out.write_text(text)
    print(summary)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
