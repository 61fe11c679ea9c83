"""Box-prompted instance segmentation benchmark on a COCO split.

The benchmark only sees a *predictor*: ``predict(image_rgb_uint8, boxes_xyxy) -> (masks, iou_pred)``
with ``boxes_xyxy`` a float32 ``[N, 4]`` array in original pixels, ``masks`` bool ``[N, H, W]`` and
``iou_pred`` float ``[N]``. Float, fake-quantized and hardware-simulated models are all wrapped into
that shape, so the same code scores all of them.

Two prompt sources:

* GT-box mode (default): each non-crowd ground-truth box is a prompt; the COCO result takes the
  annotation's category and the predicted IoU as score. This isolates mask quality from detection.
* Detection mode (``detections=...``): a detector's boxes are the prompts; the result takes the
  detector's category and ``detector score x predicted IoU`` as score, i.e. the usual
  "detector + SAM" mask AP.

Three numbers come out: COCO mask AP, mIoU against ground truth, and (optionally) mIoU against a
reference (float) model's masks on the very same prompts, which measures quantization damage
without the noise of annotation quality.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from ..data.coco import CocoSplit, Detection, Instance
from ..data.images import load_rgb
from ..errors import SamhwError
from .metrics import coco_mask_ap, encode_rles, mask_iou, mean_or_nan, rle_iou_matrix

if TYPE_CHECKING:  # the benchmark itself needs no torch: it only calls predict
    from ..models.base import SegmentModel

Predictor = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
# image_id -> (masks bool [N, H, W], iou_pred float [N]), in prompt order.
Predictions = dict[int, tuple[np.ndarray, np.ndarray]]


@dataclass
class BenchmarkResult:
    """Scores of one model on one split.

    ``n_images`` counts every evaluated image (also those without prompts: their ground truth still
    enters AP); ``n_instances`` counts prompts, i.e. predicted masks. ``per_instance`` has one
    record per prompted GT instance in GT-box mode, and one per GT instance (``iou_gt`` = best
    match, ``iou_fp`` = None) in detection mode. ``miou_fp`` (``iou_fp`` per instance) is the IoU
    against the reference masks: the float model's, hence the name (docs/results.json uses it too).
    """

    n_images: int
    n_instances: int
    ap: float
    ap50: float
    ap75: float
    miou_gt: float
    miou_fp: float | None
    per_instance: list[dict] = field(default_factory=list)
    prompt_mode: str = "gt_boxes"

    def to_dict(self) -> dict:
        """Plain JSON-ready dict; NaN (undefined, e.g. no prompts) becomes None so the JSON is strict."""
        return _nan_to_none(asdict(self))


def _nan_to_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


@dataclass(frozen=True)
class _Prompts:
    """The boxes fed to the predictor for one image, plus what each box stands for."""

    boxes: np.ndarray  # float32 [N, 4], xyxy, original pixels
    category_ids: list[int]
    det_scores: list[float] | None  # detection mode only
    instances: list[Instance] | None  # GT-box mode only


def select_images(split: CocoSplit, limit_images: int | None = None) -> list[int]:
    """The evaluated image ids: the split's name-sorted ids, truncated to the first ``limit_images``."""
    if limit_images is None:
        return list(split.image_ids)
    if limit_images < 1:
        raise SamhwError(f"{split.ann_file}: image limit must be at least 1, got {limit_images}")
    return list(split.image_ids[:limit_images])


def _image_prompts(split: CocoSplit, image_id: int,
                   detections: Mapping[int, Sequence[Detection]] | None) -> _Prompts:
    if detections is None:
        insts = split.instances(image_id)
        boxes = np.array([i.box_xyxy for i in insts], dtype=np.float32).reshape(-1, 4)
        return _Prompts(boxes, [i.category_id for i in insts], None, insts)
    dets = list(detections.get(image_id, ()))
    boxes = np.array([d[0] for d in dets], dtype=np.float32).reshape(-1, 4)
    return _Prompts(boxes, [int(d[2]) for d in dets], [float(d[1]) for d in dets], None)


def _load_split_image(split: CocoSplit, image_id: int) -> np.ndarray:
    """Load an image and make sure it matches the annotated size, which GT masks are drawn at."""
    path = split.image_path(image_id)
    image = load_rgb(path)
    expected = split.image_size(image_id)
    if image.shape[:2] != expected:
        raise SamhwError(f"{path}: image is {image.shape[1]}x{image.shape[0]} but "
                         f"{split.ann_file.name} says {expected[1]}x{expected[0]}")
    return image


def _checked_predict(predict: Predictor, image: np.ndarray, boxes: np.ndarray,
                     who: str) -> tuple[np.ndarray, np.ndarray]:
    """Call a predictor and enforce its contract, so a wrapper bug fails here and not inside COCOeval."""
    masks, iou = predict(image, boxes)
    masks = np.asarray(masks).astype(bool, copy=False)
    iou = np.asarray(iou, dtype=np.float64).reshape(-1)
    want = (len(boxes),) + image.shape[:2]
    if masks.shape != want:
        raise ValueError(f"{who} returned masks of shape {masks.shape}, expected {want}")
    if iou.shape != (len(boxes),):
        raise ValueError(f"{who} returned {iou.shape[0]} IoU predictions for {len(boxes)} boxes")
    # A broken (e.g. overflowing quantized) model may emit NaN scores; rank them last instead of
    # letting NaN scramble COCOeval's sort.
    return masks, np.nan_to_num(iou, nan=0.0, posinf=1.0, neginf=0.0)


def collect_predictions(split: CocoSplit, predict: Predictor, *,
                        detections: Mapping[int, Sequence[Detection]] | None = None,
                        limit_images: int | None = None, progress: bool = True,
                        desc: str = "reference") -> Predictions:
    """Run ``predict`` once over the benchmark prompts and keep the outputs.

    Meant for the float reference model: compute its masks once, then pass the result as
    ``reference_masks`` to several :func:`run_benchmark` calls (one per quantization setting).
    Images without prompts are stored as empty ``[0, H, W]`` arrays. Memory is one bool byte per
    pixel per prompt, fine for benchmark-sized subsets, not for all of COCO val at once.
    """
    out: Predictions = {}
    for image_id in tqdm(select_images(split, limit_images), desc=desc, disable=not progress, unit="img"):
        prompts = _image_prompts(split, image_id, detections)
        if len(prompts.boxes) == 0:
            h, w = split.image_size(image_id)
            out[image_id] = (np.zeros((0, h, w), dtype=bool), np.zeros(0))
            continue
        image = _load_split_image(split, image_id)
        out[image_id] = _checked_predict(predict, image, prompts.boxes, "predictor")
    return out


def _reference_for(image_id: int, image: np.ndarray, boxes: np.ndarray,
                   reference_predict: Predictor | None,
                   reference_masks: Mapping | None) -> np.ndarray | None:
    """Reference masks for one image, from the cache when given, else by running the reference."""
    if reference_predict is not None:
        return _checked_predict(reference_predict, image, boxes, "reference predictor")[0]
    if reference_masks is None:
        return None
    if image_id not in reference_masks:
        raise ValueError(f"reference_masks has no entry for image {image_id}")
    ref = reference_masks[image_id]
    ref = np.asarray(ref[0] if isinstance(ref, tuple) else ref, dtype=bool)
    if ref.shape != (len(boxes),) + image.shape[:2]:
        raise ValueError(f"reference_masks[{image_id}] has shape {ref.shape}, expected "
                         f"{(len(boxes),) + image.shape[:2]}: computed with different prompts?")
    return ref


def _best_match_ious(split: CocoSplit, image_id: int, pred_rles: list[dict]) -> list[tuple[Instance, float]]:
    """Detection mode: each GT instance scored by its best-overlapping predicted mask (0 if none).

    This is a recall-style mIoU: it asks "was every object segmented by some prompt?" and ignores
    extra predictions, which AP already penalises.
    """
    insts = split.instances(image_id)
    gt_rles = [split.coco.annToRLE(split.coco.anns[i.ann_id]) for i in insts]
    ious = rle_iou_matrix(pred_rles, gt_rles)
    best = ious.max(axis=0) if len(pred_rles) else np.zeros(len(insts))
    return [(inst, float(b)) for inst, b in zip(insts, best)]


@dataclass
class _ImageScores:
    """What one image contributes to the benchmark totals."""

    results: list[dict] = field(default_factory=list)  # COCO result dicts for AP
    per_instance: list[dict] = field(default_factory=list)
    ref_ious: list[float] = field(default_factory=list)


def _score_image(split: CocoSplit, image_id: int, predict: Predictor | Predictions,
                 detections: Mapping[int, Sequence[Detection]] | None,
                 reference_predict: Predictor | None, reference_masks: Mapping | None) -> _ImageScores:
    has_ref = reference_predict is not None or reference_masks is not None
    prompts = _image_prompts(split, image_id, detections)
    out = _ImageScores()
    masks, rles = None, []
    if len(prompts.boxes):
        image = _load_split_image(split, image_id)
        if isinstance(predict, dict):  # predictions already made by collect_predictions
            masks, iou_pred = predict[image_id]
        else:
            masks, iou_pred = _checked_predict(predict, image, prompts.boxes, "predictor")
        ref = _reference_for(image_id, image, prompts.boxes, reference_predict, reference_masks)
        rles = encode_rles(masks)
        scores = iou_pred if prompts.det_scores is None else iou_pred * np.asarray(prompts.det_scores)
        out.results = [{"image_id": image_id, "category_id": cat, "segmentation": rle, "score": float(s)}
                       for rle, cat, s in zip(rles, prompts.category_ids, scores)]
        if ref is not None:
            out.ref_ious = [mask_iou(m, r) for m, r in zip(masks, ref)]

    if prompts.instances is not None:  # GT-box mode: prompt k *is* instance k
        out.per_instance = [{"ann_id": inst.ann_id, "image_id": image_id,
                             "iou_gt": mask_iou(masks[k], split.gt_mask(inst.ann_id)),
                             "iou_fp": out.ref_ious[k] if has_ref else None}
                            for k, inst in enumerate(prompts.instances)]
    else:
        out.per_instance = [{"ann_id": inst.ann_id, "image_id": image_id, "iou_gt": best, "iou_fp": None}
                            for inst, best in _best_match_ious(split, image_id, rles)]
    return out


def run_benchmark(split: CocoSplit, predict: Predictor | Predictions, *,
                  reference_predict: Predictor | None = None,
                  reference_masks: Mapping[int, np.ndarray | tuple] | None = None,
                  detections: Mapping[int, Sequence[Detection]] | None = None,
                  limit_images: int | None = None, progress: bool = True,
                  desc: str = "eval") -> BenchmarkResult:
    """Score ``predict`` on ``split`` (first ``limit_images`` images in name order).

    ``predict`` is a predictor, or the output of :func:`collect_predictions` for the same prompts,
    so masks computed once (the float model's) can be scored without running the model again.

    Give the float model either as ``reference_predict`` (run alongside) or as ``reference_masks``
    (output of :func:`collect_predictions` with the same prompts, or just its mask arrays) to get
    ``miou_fp``. Images without prompts are not predicted but still count in AP, since their
    ground truth is then simply missed.
    """
    if reference_predict is not None and reference_masks is not None:
        raise ValueError("give reference_predict or reference_masks, not both")
    has_ref = reference_predict is not None or reference_masks is not None
    image_ids = select_images(split, limit_images)
    total = _ImageScores()
    for image_id in tqdm(image_ids, desc=desc, disable=not progress, unit="img"):
        scores = _score_image(split, image_id, predict, detections, reference_predict, reference_masks)
        total.results += scores.results
        total.per_instance += scores.per_instance
        total.ref_ious += scores.ref_ious

    ap = coco_mask_ap(split, total.results, image_ids)
    return BenchmarkResult(
        n_images=len(image_ids), n_instances=len(total.results),
        ap=ap["ap"], ap50=ap["ap50"], ap75=ap["ap75"],
        miou_gt=mean_or_nan([r["iou_gt"] for r in total.per_instance]),
        miou_fp=mean_or_nan(total.ref_ious) if has_ref else None,
        per_instance=total.per_instance,
        prompt_mode="gt_boxes" if detections is None else "detections",
    )


def evaluate_model(split: CocoSplit, model: SegmentModel, reference: SegmentModel | None = None,
                   reference_masks: Predictions | None = None,
                   detections: Mapping[int, Sequence[Detection]] | None = None,
                   limit_images: int | None = None, progress: bool = True) -> BenchmarkResult:
    """Benchmark ``model``; against a float ``reference`` too (or its precomputed masks)."""
    if reference is not None and reference_masks is None:
        reference_masks = collect_predictions(split, reference.predict, detections=detections,
                                              limit_images=limit_images, progress=progress, desc="float reference")
    return run_benchmark(split, model.predict, reference_masks=reference_masks, detections=detections,
                         limit_images=limit_images, progress=progress, desc=f"eval {model.name}")
