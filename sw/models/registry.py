"""Name -> model builder. ``litemedsam`` is the default and needs no checkpoint."""

from __future__ import annotations

from ..errors import SamhwError
from .base import SegmentModel

MODEL_NAMES = ("litemedsam", "sam_vit_b", "sam_vit_l", "sam_vit_h")
DEFAULT_MODEL = "litemedsam"


def load_model(name: str = DEFAULT_MODEL, checkpoint: str | None = None) -> SegmentModel:
    if name == "litemedsam":
        from .litemedsam import build_litemedsam

        return build_litemedsam(checkpoint)
    if name in ("sam_vit_b", "sam_vit_l", "sam_vit_h"):
        from .sam_vit import load_sam_vit

        return load_sam_vit(name, checkpoint)
    raise SamhwError(f"unknown model '{name}' (choose from {', '.join(MODEL_NAMES)})")
