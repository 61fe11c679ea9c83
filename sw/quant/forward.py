"""Forwarding calibration items through a model: the pass that observers, BIG and audits listen to."""

from __future__ import annotations

import torch
from tqdm import tqdm

from ..data.calibration import CalibItem
from ..models.base import SegmentModel


@torch.inference_mode()
def run_items(model: SegmentModel, items: list[CalibItem], desc: str, progress: bool = True) -> None:
    """Forward every item: encoder once, decoder once with all of the item's prompts."""
    for item in tqdm(items, desc=desc, disable=not progress, unit="img"):
        x, meta = model.preprocess(item.image)
        embedding = model.encode(x)
        if len(item.boxes):
            model.decode(embedding, model.boxes_to_input(item.boxes, meta))
