"""Model registry: every SAM-family model behind one interface (:class:`SegmentModel`).

The names below load on first use, so that torch-free modules of this package (``sam_vit_config``)
can be imported without torch."""

__all__ = ["ImageMeta", "SegmentModel", "MODEL_NAMES", "load_model"]


def __getattr__(name: str):
    if name in ("ImageMeta", "SegmentModel"):
        from . import base

        return getattr(base, name)
    if name in ("MODEL_NAMES", "load_model"):
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
