"""``samhw verify masks``: masks from the numpy integer reference vs the fake-quant model, on val images
with ground-truth boxes (docs/ref_masks_<recipe>_<bits>.md).

For each val image the masks are computed with the whole-model integer reference (sw/ref/run.py: numpy
only, from the bundle) and with the fake-quant model, both postprocessed by the model's own postprocess
as the benchmark does, and compared by mask IoU. For scale, more columns: the fake-quant model against
itself with 1e-6 Gaussian noise added to the preprocessed image (its own code-level sensitivity, which
bounds any whole-model agreement), the reference against the host-emulating fake-quant model
(sw/export/host_emulation.py), whole and decoder only from the same fake-quant embedding, and the
reference against the fake-quant model's own graph with the bundle's integer kernels doing the quantized
layers' arithmetic (``integer_kernel_model``), which isolates the reference's rewrite of the graph. Last,
the reference's, the fake-quant model's and the noisy fake-quant model's masks are each scored against
the ground truth (mIoU, mask AP) as the benchmark scores a model.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..data.coco import CocoSplit
from .checked import CheckedModelSpec

PROMPT_BATCH = 4  # as SegmentModel.predict, so the fake-quant masks are the benchmark's
NOISE = 1e-6


@dataclass
class MaskModels:
    """What every image's row needs; handed to each worker process once, when it starts."""

    split: CocoSplit
    qmodel: object
    bundle: object
    emulated: object
    kernels: object


def decoded_masks(model, meta, decode: Callable, embedding, boxes) -> tuple[np.ndarray, np.ndarray]:
    """Bool masks at the original size and predicted IoU, for ``decode(embedding, boxes) -> (logits, iou)``."""
    import torch

    chunks = [decode(embedding, boxes[i:i + PROMPT_BATCH]) for i in range(0, len(boxes), PROMPT_BATCH)]
    logits = torch.cat([torch.as_tensor(np.asarray(c[0])).float() for c in chunks])
    iou = np.concatenate([np.asarray(c[1], np.float64).reshape(-1) for c in chunks])
    return (model.postprocess(logits, meta) > 0).numpy(), iou


def mask_ious(a: np.ndarray, b: np.ndarray) -> list[float]:
    from ..eval.metrics import mask_iou

    return [mask_iou(x, y) for x, y in zip(a, b)]


def _image_row(models: MaskModels, image, boxes_xyxy) -> dict:
    import torch

    from ..ref.run import decode_masks, encode_image

    qmodel, emulated, kernels, bundle = models.qmodel, models.emulated, models.kernels, models.bundle
    x, meta = qmodel.preprocess(image)
    boxes = qmodel.boxes_to_input(boxes_xyxy, meta)
    with torch.inference_mode():
        emb = qmodel.encode(x)
        fq = decoded_masks(qmodel, meta, qmodel.decode, emb, boxes)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)) * NOISE
        noisy = decoded_masks(qmodel, meta, qmodel.decode, qmodel.encode(x + noise), boxes)
        emulated_decode = lambda e, b: emulated.decode(e.double(), b.double())  # noqa: E731
        emulated_dec = decoded_masks(qmodel, meta, emulated_decode, emb, boxes)
        emulated_all = decoded_masks(qmodel, meta, emulated_decode, emulated.encode(x.double()), boxes)
        kernels_decode = lambda e, b: kernels.decode(e.double(), b.double())  # noqa: E731
        kernels_all = decoded_masks(qmodel, meta, kernels_decode, kernels.encode(x.double()), boxes)
    ref_decode = lambda e, b: decode_masks(bundle, e, b.numpy())  # noqa: E731
    start = time.perf_counter()
    ref = decoded_masks(qmodel, meta, ref_decode, encode_image(bundle, x.numpy()), boxes)
    seconds = time.perf_counter() - start
    ref_dec = decoded_masks(qmodel, meta, ref_decode, emb.double().numpy(), boxes)
    return {"ref": mask_ious(ref[0], fq[0]), "noisy": mask_ious(noisy[0], fq[0]), "emulated": mask_ious(ref[0], emulated_all[0]),
            "decoder": mask_ious(ref_dec[0], emulated_dec[0]), "kernels": mask_ious(ref[0], kernels_all[0]),
            "seconds": seconds, "predictions": {"fake-quant": fq, "fake-quant + 1e-6 noise": noisy,
                                                 "integer reference": ref}}


def image_row(models: MaskModels, image_id: int) -> tuple[int, str, dict] | None:
    """(image id, file name, row) of one val image, or None when it has no boxes; one torch thread."""
    import torch

    from ..data.images import load_rgb

    torch.set_num_threads(1)
    split = models.split
    boxes = np.array([i.box_xyxy for i in split.instances(image_id)], np.float32).reshape(-1, 4)
    if not len(boxes):
        return None
    row = _image_row(models, load_rgb(split.image_path(image_id)), boxes)
    return image_id, split.image_info(image_id)["file_name"], row


_worker_models: MaskModels | None = None  # each pool worker's own, set by _start_worker


def _start_worker(models: MaskModels) -> None:
    global _worker_models
    _worker_models = models


def _worker_row(image_id: int):
    return image_row(_worker_models, image_id)


def image_rows(models: MaskModels, images: list[int], workers: int = 1) -> Iterator:
    """``image_row`` of every image, in order; with ``workers`` > 1 in forked processes, each given the
    models once by the pool's initializer (fork: inherited, never pickled)."""
    if workers <= 1:
        yield from map(partial(image_row, models), images)
        return
    with multiprocessing.get_context("fork").Pool(workers, initializer=_start_worker, initargs=(models,)) as pool:
        yield from pool.imap(_worker_row, images)


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


def _accuracy_table(split: CocoSplit, predictions: dict, images: list[int]) -> list[str]:
    from ..eval.benchmark import run_benchmark

    lines = ["| masks from | mIoU vs ground truth (%) | mask AP (%) | AP50 (%) |", "|---|---|---|---|"]
    for source in next(iter(predictions.values())):
        per_image = {image_id: p[source] for image_id, p in predictions.items()}
        # Images without boxes still enter AP (their ground truth is missed), as in the benchmark.
        result = run_benchmark(split, per_image, limit_images=len(images), progress=False)
        lines.append(f"| {source} | {100 * result.miou_gt:.2f} | {100 * result.ap:.2f} | {100 * result.ap50:.2f} |")
    return lines


def _summary(rows: list[tuple[str, dict]]) -> str:
    every = lambda key: [v for _, r in rows for v in r[key]]  # noqa: E731
    per_image = lambda key: np.mean([np.mean(r[key]) for _, r in rows])  # noqa: E731
    return (f"Mean over {len(rows)} images: ref vs fake-quant {per_image('ref'):.4f} "
            f"(over {len(every('ref'))} boxes: {np.mean(every('ref')):.4f}); fake-quant with 1e-6 input noise vs "
            f"fake-quant {np.mean(every('noisy')):.4f}; whole model, ref vs host-emulating fake-quant "
            f"{per_image('emulated'):.4f}; decoder only, ref vs host-emulating "
            f"{np.mean(every('decoder')):.4f} (per box); whole model, ref vs fake-quant graph on integer kernels "
            f"{per_image('kernels'):.4f} (over boxes {np.mean(every('kernels')):.4f}, "
            f"lowest box {np.min(every('kernels')):.4f}).")


_COLUMNS = [
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
    "fake-quant model in docs/crosscheck_*.md.",
]


def verify_masks(spec: CheckedModelSpec, limit: int, command: str, workers: int = 1,
                 out: str | Path | None = None, progress: bool = True) -> tuple[Path, str]:
    """Write the report (default docs/ref_masks_<recipe>_<bits>.md) for the first ``limit`` val images;
    returns its path and the summary line. Everything runs on one torch thread per process."""
    import torch
    from tqdm import tqdm

    from ..eval.benchmark import select_images
    from ..export.host_emulation import host_emulating_model, integer_kernel_model
    from .checked import checked_model, exported_bundle
    from .report import generated_by, write_report

    torch.set_num_threads(1)
    checked = checked_model(spec, progress)
    cfg = checked.cfg
    split = spec.val_split()
    rows, skipped, predictions = [], 0, {}
    with exported_bundle(checked, progress) as bundle:
        models = MaskModels(split, checked.qmodel, bundle, host_emulating_model(checked.qmodel, bundle),
                            integer_kernel_model(checked.qmodel, bundle))
        images = select_images(split, limit)
        for result in tqdm(image_rows(models, images, workers), total=len(images), desc="ref vs fake-quant",
                           unit="img", disable=not progress):
            if result is None:
                skipped += 1
            else:
                image_id, name, row = result
                predictions[image_id] = row.pop("predictions")
                rows.append((name, row))

    summary = _summary(rows)
    calibration = (f"Fake-quant state {Path(spec.quant_state).name}; host-code ranges from {len(checked.items)} "
                   "coco_tiny train images" if spec.quant_state else
                   f"Calibration and host-code ranges: {len(checked.items)} coco_tiny train images")
    path = write_report(out or checked.report_path("ref_masks"), [
        f"# Whole-model integer reference vs fake-quant masks: {checked.model.name} {cfg.recipe} {cfg.bits_name}", "",
        generated_by(command, 1), "",
        f"{calibration}. Checked on the first {limit} val "
        f"images with all their ground-truth boxes ({skipped} without boxes skipped). Masks are the model's "
        "postprocessed logits > 0 at the original image size; IoU per box, averaged per image.", "",
        *_COLUMNS, "",
        *_table(rows), "", summary, "",
        "## Task accuracy of each set of masks", "",
        "The same masks scored against the ground truth as the benchmark scores a model (`sw/eval/benchmark.py`: "
        "mIoU per box, COCO mask AP with the predicted IoU as score). The noise row is how far the fake-quant "
        "model's own accuracy moves under a 1e-6 input perturbation.", "",
        *_accuracy_table(split, predictions, images), ""])
    print(summary)
    return path, summary
