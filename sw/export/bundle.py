"""Writing a calibrated model's bundle: one pass over calibration images for the host-code ranges, then
every quantized layer and attention as a bundle entry (see ``sw/export/layers.py``), and last the
``host`` layer with the float parameters and structure of the host steps (``sw/export/host_params.py``)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from .. import __version__
from ..data.calibration import CalibItem
from ..models.base import SegmentModel
from ..quant.forward import run_items
from ..quant.qmodules import QuantConv2d, QuantLinear
from ..bundle import Bundle, BundleHeader, write_bundle
from .host_params import host_layer
from .layers import ATTENTION_TYPES, HOST_BITS, attention_layer, gemm_layer, projection_consumers


def _consumers(qmodel: nn.Module) -> dict[str, tuple]:
    found = {}
    for name, module in qmodel.named_modules():
        if isinstance(module, ATTENTION_TYPES):
            for proj, consumer in projection_consumers(module).items():
                found[f"{name}.{proj}"] = consumer
    return found


def _observe_ranges(qmodel: SegmentModel, items: list[CalibItem], host_layers: list[str],
                    progress: bool) -> tuple[dict[str, float], dict[str, int]]:
    """Largest |output| of each host-output layer and longest key sequence of each attention."""
    host_max = {name: 0.0 for name in host_layers}
    keys: dict[str, int] = {}
    handles = []

    def output_hook(name):
        def hook(_module, _inputs, output):
            host_max[name] = max(host_max[name], float(output.detach().abs().max()))
        return hook

    def softmax_hook(name):
        def hook(_module, inputs):
            keys[name] = max(keys.get(name, 0), int(inputs[0].shape[-1]))
        return hook

    for name, module in qmodel.named_modules():
        if name in host_max:
            handles.append(module.register_forward_hook(output_hook(name)))
        elif isinstance(module, ATTENTION_TYPES):
            handles.append(module.softmax_quantizer.register_forward_pre_hook(softmax_hook(name)))
    try:
        run_items(qmodel, items, desc="export ranges", progress=progress)
    finally:
        for h in handles:
            h.remove()
    return host_max, keys


def build_bundle(qmodel: SegmentModel, items: list[CalibItem], progress: bool = True) -> Bundle:
    consumers = _consumers(qmodel)
    gemms = [(n, m) for n, m in qmodel.named_modules() if isinstance(m, (QuantLinear, QuantConv2d))]
    host_max, keys = _observe_ranges(qmodel, items, [n for n, _ in gemms if n not in consumers], progress)
    layers = {}
    with torch.no_grad():
        for name, module in qmodel.named_modules():
            if isinstance(module, (QuantLinear, QuantConv2d)):
                layers[name] = gemm_layer(name, module, consumers.get(name), host_max.get(name))
            elif isinstance(module, ATTENTION_TYPES):
                layers[name] = attention_layer(name, module, keys.get(name, 1))
        host = host_layer(qmodel)
        layers[host.name] = host
    cfg = qmodel.quant_config
    header = BundleHeader(model=qmodel.name, recipe=cfg.recipe, weight_bits=cfg.weight_bits, act_bits=cfg.act_bits,
                          host_bits=HOST_BITS, tool=f"samhw {__version__}", calibration_images=len(items),
                          quant_config=cfg.to_dict())
    return Bundle(header, layers)


def export_bundle(qmodel: SegmentModel, items: list[CalibItem], out: str | Path, progress: bool = True) -> Path:
    return write_bundle(build_bundle(qmodel, items, progress), out)
