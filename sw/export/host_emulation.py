"""The fake-quant model as the integer reference sees it: float64, every host output on its 16-bit grid.

The integer reference (``sw/ref/run.py``) differs from the fake-quant model in three ways: host steps
run in float64, integer weights times their scale are exact, and every layer that hands its result to
the host rounds it to the layer's signed 16-bit host code. This copy of the fake-quant model does the
same, and its AGQ softmax quantizers take their values from the exported LUT and drop the codes the
hardware drops, so the two agree up to rounding ties (31-bit fixed-point requantization and integer
group multipliers against exact float division). Comparing the
reference with the plain float32 fake-quant model instead measures mostly the model's own sensitivity:
one flipped activation code cascades through the following blocks, so a 1e-6 change of the input
image moves the plain model's outputs about as far as the reference's host rounding does.
"""

from __future__ import annotations

import copy

import torch

from ..models.base import SegmentModel
from ..quant.agq import AGQQuantizer, agq_codes
from ..quant.qmodules import QuantConv2d, QuantLinear
from ..ref.bundle import Bundle
from ..ref.kernels import agq_weights


def _host_rounding(output: dict):
    def hook(_module, _inputs, y):
        return torch.clamp(torch.round(y / output["scale"]), output["min"], output["max"]) * output["scale"]
    return hook


def _agq_as_exported(layer) -> callable:
    """AGQ values as the A.V unit sees them: the reference's integer operand (``agq_weights``: LUT entry
    shifted, 0 for the zero code and past ``max_shift``) times its unit."""
    sm = layer.params["softmax"]
    unit = sm["scale"] * 2.0 ** -(sm["lut_frac_bits"] + sm["max_shift"])

    def forward(a: torch.Tensor, value: torch.Tensor | None = None) -> torch.Tensor:
        codes = agq_codes(a, sm["scale"], sm["tau"], sm["bits"]).long().cpu().numpy()
        weights = agq_weights(codes, sm["tau"], layer["lut"], sm["max_shift"], sm["bits"])
        return (torch.from_numpy(weights).double() * unit).to(device=a.device, dtype=a.dtype)
    return forward


def host_emulating_model(qmodel: SegmentModel, bundle: Bundle) -> SegmentModel:
    """A float64 copy of ``qmodel`` whose host-output layers round to ``bundle``'s host codes; feed it
    float64 images and boxes."""
    model = copy.deepcopy(qmodel)
    weights = []
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (QuantLinear, QuantConv2d)):
                # The bundle's weight codes come from float32 division (redone in float64 a few
                # weights round the other way, each shifting a whole output channel), and the
                # integer weights times their scale are exact in float64, not in float32.
                wq = module.weight_quantizer
                codes = wq.codes(module.weight.detach())
                shape = (-1,) + (1,) * (codes.dim() - 1)
                weights.append((module, codes - wq.zero_point.reshape(shape), wq.scale.reshape(shape)))
                wq.enabled = False
    model = model.double()
    for module, w_int, scale in weights:
        module.weight.data = w_int.double() * scale.double()
    pe = model.prompt_encoder.pe_layer
    # SAM casts prompt coordinates to float32 before the Fourier features; lift them back to float64
    # (box corners / 256 are exact in float32, so only the features' precision changes).
    pe._pe_encoding = lambda coords, encode=pe._pe_encoding: encode(coords.double())
    for name, module in model.named_modules():
        if isinstance(module, (QuantLinear, QuantConv2d)):
            output = bundle.layer(name).params["output"]
            if output["to"] == "host":
                module.register_forward_hook(_host_rounding(output))
        quantizer = getattr(module, "softmax_quantizer", None)
        if isinstance(quantizer, AGQQuantizer) and quantizer.enabled:
            quantizer.forward = _agq_as_exported(bundle.layer(name))
    return model
