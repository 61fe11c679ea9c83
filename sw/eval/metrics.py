"""Mask metrics: pairwise IoU, COCO RLE encoding and COCO mask AP via pycocotools.

Mask AP is delegated to pycocotools' ``COCOeval`` rather than re-implemented, so numbers are
comparable with published SAM / detector results.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Iterable

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from ..data.coco import CocoSplit


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks of equal shape.

    Two empty masks count as a perfect match (1.0): both sides agree there is nothing there, and
    returning 0 would punish a quantized model for agreeing with the float model.
    """
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask_iou: shapes differ {a.shape} vs {b.shape}")
    union = int(np.count_nonzero(a | b))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(a & b)) / union


def encode_rle(mask: np.ndarray) -> dict:
    """COCO RLE of one ``HxW`` bool mask, with ``counts`` as ``str`` so it can be written to JSON."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode_rle: expected an HxW mask, got shape {mask.shape}")
    return encode_rles(mask[None])[0]


def encode_rles(masks: np.ndarray) -> list[dict]:
    """COCO RLEs of an ``NxHxW`` stack in one pycocotools call (much faster than N calls)."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"encode_rles: expected NxHxW masks, got shape {masks.shape}")
    if masks.shape[0] == 0:
        return []
    # pycocotools wants HxWxN Fortran-ordered uint8.
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def rle_iou_matrix(pred: list[dict], gt: list[dict]) -> np.ndarray:
    """IoU of every predicted RLE against every ground-truth RLE, shape ``[len(pred), len(gt)]``.

    Works on RLEs because comparing dense masks pairwise costs O(N*M*H*W). Pairs where both
    masks are empty get 1.0, matching :func:`mask_iou`.
    """
    if not pred or not gt:
        return np.zeros((len(pred), len(gt)), dtype=np.float64)
    ious = np.asarray(mask_utils.iou(pred, gt, [0] * len(gt)), dtype=np.float64).reshape(len(pred), len(gt))
    pred_empty = mask_utils.area(pred) == 0
    gt_empty = mask_utils.area(gt) == 0
    ious[np.outer(pred_empty, gt_empty)] = 1.0
    return ious


def _stat(value: float) -> float:
    # COCOeval reports -1 when no category has ground truth; that is "undefined", not a score.
    return float("nan") if value < 0 else float(value)


def _has_ground_truth(split: CocoSplit, image_ids: Iterable[int]) -> bool:
    return any(split.instances(i) for i in image_ids)


def coco_mask_ap(split: CocoSplit, results: list[dict],
                 image_ids: Iterable[int] | None = None) -> dict[str, float]:
    """COCO mask AP (``ap`` = AP@[.5:.95], ``ap50``, ``ap75``) over ``image_ids`` (default: all).

    ``results`` are COCO result dicts ``{image_id, category_id, segmentation (RLE), score}``.
    With no results at all, every ground-truth object is missed, so all three values are 0.0;
    they are NaN only when the evaluated images contain no (non-crowd) ground truth, where AP is
    undefined.
    """
    ids = sorted(split.image_ids if image_ids is None else set(image_ids))
    if not results:
        value = 0.0 if _has_ground_truth(split, ids) else float("nan")
        return {"ap": value, "ap50": value, "ap75": value}
    unknown = {r["image_id"] for r in results} - set(ids)
    if unknown:
        raise ValueError(f"coco_mask_ap: results for images outside the evaluated set: {sorted(unknown)[:5]}")

    # loadRes mutates the dicts it gets (adds id/area/bbox), so hand it copies. A 'bbox' key would
    # make loadRes take its box branch and compute the area from the box, hence it is dropped.
    clean = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        detections = split.coco.loadRes(clean)
        evaluator = COCOeval(split.coco, detections, iouType="segm")
        evaluator.params.imgIds = ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return {"ap": _stat(stats[0]), "ap50": _stat(stats[1]), "ap75": _stat(stats[2])}


def mean_or_nan(values: list[float]) -> float:
    """Mean that returns NaN for an empty list instead of warning (no prompts means no mIoU)."""
    return float(np.mean(values)) if values else math.nan
