"""Model registry: every SAM-family model behind one interface (:class:`SegmentModel`)."""

from .base import ImageMeta, SegmentModel
from .registry import MODEL_NAMES, load_model

__all__ = ["ImageMeta", "SegmentModel", "MODEL_NAMES", "load_model"]
