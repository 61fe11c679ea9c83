"""Saving and restoring a calibrated quantized model as its quantization parameters alone.

The float weights come from the model registry, so a state file holds only what calibration
produced: every quantizer's scale and zero point, plus the config (JSON in the safetensors header).
No pickle is involved.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import SamhwError
from ..models.base import SegmentModel
from .config import QuantConfig
from .prepare import iter_quantizers, quantize_model, set_quant_state

STATE_FORMAT = "samhw-quant-state"
STATE_VERSION = 1


def save_quant_state(qmodel: SegmentModel, path: str | Path, extra: dict | None = None) -> None:
    path = Path(path)
    tensors = {}
    for name, q in iter_quantizers(qmodel):
        tensors[f"{name}.scale"] = q.scale.detach().contiguous()
        tensors[f"{name}.zero_point"] = q.zero_point.detach().contiguous()
    meta = {
        "format": STATE_FORMAT,
        "version": str(STATE_VERSION),
        "model": qmodel.name,
        "config": json.dumps(qmodel.quant_config.to_dict(), sort_keys=True),
        "extra": json.dumps(extra or {}, sort_keys=True),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a failure never leaves a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_quant_state(model: SegmentModel, path: str | Path) -> SegmentModel:
    """Rebuild the quantized model from the float ``model`` and a state file."""
    path = Path(path)
    if not path.is_file():
        raise SamhwError(f"{path}: quantization state file not found")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SamhwError(f"{path}: corrupt quantization state ({str(exc).splitlines()[0]})") from None
    if meta.get("format") != STATE_FORMAT:
        raise SamhwError(f"{path}: not a samhw quantization state file")
    if meta.get("version") != str(STATE_VERSION):
        raise SamhwError(f"{path}: quantization state version {meta.get('version')} is not supported (expected {STATE_VERSION})")
    if meta.get("model") != model.name:
        raise SamhwError(f"{path}: state is for model '{meta.get('model')}', not '{model.name}'")
    qmodel = quantize_model(model, QuantConfig.from_dict(json.loads(meta["config"])))
    for name, q in iter_quantizers(qmodel):
        for field in ("scale", "zero_point"):
            key = f"{name}.{field}"
            if key not in tensors:
                raise SamhwError(f"{path}: missing quantizer parameter '{key}'")
            setattr(q, field, tensors[key].to(torch.float32))
        q.calibrated.fill_(True)
    set_quant_state(qmodel, act=True, weight=True)
    return qmodel
