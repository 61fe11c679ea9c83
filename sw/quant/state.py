"""Saving and restoring a calibrated quantized model as its quantization parameters alone.

The float weights come from the model registry, so a state file holds only what calibration
produced: every quantizer's parameter buffers (scale and zero point; AGQ's scale and tau; the learned
rounding bits of reconstructed weights), the BIG
signs folded into the weights, and the config (JSON in the safetensors header). No pickle.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..atomic_file import atomic_path
from ..errors import SamhwError
from ..models.base import SegmentModel
from .big import BigReport, fold_signs
from .config import QuantConfig
from .prepare import iter_quantizers, quantize_model, set_quant_state

STATE_FORMAT = "samhw-quant-state"
STATE_VERSION = 1
BIG_PREFIX = "big_signs."


def _parameter_buffers(quantizer) -> dict[str, torch.Tensor]:
    return {k: v for k, v in quantizer.state_dict().items() if k != "calibrated"}


def save_quant_state(qmodel: SegmentModel, path: str | Path, extra: dict | None = None) -> None:
    path = Path(path)
    tensors = {}
    for name, q in iter_quantizers(qmodel):
        for field, value in _parameter_buffers(q).items():
            tensors[f"{name}.{field}"] = value.detach().contiguous()
    for report in getattr(qmodel, "big_reports", []):
        if report.folded:
            tensors[BIG_PREFIX + report.module] = report.signs.contiguous()
    # One metadata key holding sorted JSON: safetensors writes its metadata map in hash order, so
    # several keys would make two saves of the same state differ byte for byte.
    meta = {"samhw": json.dumps({
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "model": qmodel.name,
        "config": qmodel.quant_config.to_dict(),
        "extra": extra or {},
    }, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def calibration_metadata(seconds: float, images: int) -> dict:
    """What a state records about its calibration (``extra`` of :func:`save_quant_state`), under the keys
    docs/results.json uses: wall-clock seconds, image count and the torch thread count it ran with."""
    return {"calib_seconds": round(seconds, 3), "calib_images": images, "torch_threads": torch.get_num_threads()}


def _corrupt(path: Path, exc: Exception) -> SamhwError:
    return SamhwError(f"{path}: corrupt quantization state ({str(exc).splitlines()[0]})")


def read_state_metadata(path: str | Path) -> dict:
    """The header of a state file: format, version, model, config and ``extra`` (calibration metadata)."""
    path = Path(path)
    if not path.is_file():
        raise SamhwError(f"{path}: quantization state file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {}).get("samhw", "{}"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _corrupt(path, exc) from None
    if meta.get("format") != STATE_FORMAT:
        raise SamhwError(f"{path}: not a samhw quantization state file")
    if meta.get("version") != STATE_VERSION:
        raise SamhwError(f"{path}: quantization state version {meta.get('version')} is not supported (expected {STATE_VERSION})")
    return meta


def load_quant_state(model: SegmentModel, path: str | Path) -> SegmentModel:
    """Rebuild the quantized model from the float ``model`` and a state file."""
    path = Path(path)
    meta = read_state_metadata(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _corrupt(path, exc) from None
    if meta.get("model") != model.name:
        raise SamhwError(f"{path}: state is for model '{meta.get('model')}', not '{model.name}'")
    qmodel = quantize_model(model, QuantConfig.from_dict(meta["config"]))
    qmodel.big_reports = []
    for key, signs in tensors.items():
        if key.startswith(BIG_PREFIX):
            module = key[len(BIG_PREFIX):]
            fold_signs(qmodel.get_submodule(module), signs)
            # only bimodal (two-peak) keys are ever folded
            qmodel.big_reports.append(BigReport(module, 2, True, True, int((signs < 0).sum()), signs))
    for name, q in iter_quantizers(qmodel):
        for field, current in _parameter_buffers(q).items():
            key = f"{name}.{field}"
            if key not in tensors:
                raise SamhwError(f"{path}: missing quantizer parameter '{key}'")
            setattr(q, field, tensors[key].to(current.dtype))
        if f"{name}.round_up" in tensors:  # AdaRound's learned rounding, only after reconstruction
            q.round_up = tensors[f"{name}.round_up"].bool()
        q.calibrated.fill_(True)
    set_quant_state(qmodel, act=True, weight=True)
    return qmodel
