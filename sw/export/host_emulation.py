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

``integer_kernel_model`` closes the remaining gap: the same float64 copy, with every quantized layer's
arithmetic (input encoding, integer GEMM, group multipliers, fixed-point requantization) done by the
bundle's integer kernels and each attention's A.V accumulator requantized with the bundle's multiplier.
What is left of the fake-quant model is its graph: the original modules' wiring, LayerNorms, softmax,
GELU, residuals, window partition and the decoder's float heads, all in torch. Against it the
reference checks its own rewrite of that graph (``sw/ref/encoder.py``, ``decoder.py``); the layers'
arithmetic is checked against the float32 fake-quant model per layer (``sw/verify/layers.py``).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..models.base import SegmentModel
from ..quant.agq import AGQQuantizer, agq_codes
from ..quant.qmodules import QuantConv2d, QuantDecoderAttention, QuantLinear
from ..bundle import AgqCodes, AttentionLayer, Bundle, GemmLayer, HostOutput, SoftmaxCodes
from ..ref.layers import probability_operands, requantize_output, run_layer
from ..ref.steps import encode_input
from .layers import ATTENTION_TYPES, projection_consumers

# |A.V / unit - round(A.V / unit)| in float64 stays far below this for any accumulator under 2^47; a
# larger gap means the value did not come from integer operands in that unit.
_SNAP_TOLERANCE = 0.25


def _host_rounding(output: HostOutput):
    def hook(_module, _inputs, y):
        return torch.clamp(torch.round(y / output.scale), output.q_min, output.q_max) * output.scale
    return hook


def _probability_unit(softmax: SoftmaxCodes) -> float:
    """Real value of one step of the integer A.V probability operand (AGQ: the LUT's and shift's unit)."""
    if isinstance(softmax, AgqCodes):
        return softmax.scale * 2.0 ** -(softmax.lut_frac_bits + softmax.max_shift)
    return softmax.scale


def _agq_as_exported(layer) -> callable:
    """AGQ values as the A.V unit sees them: the reference's integer operand (``agq_weights``: LUT entry
    shifted, 0 for the zero code and past ``max_shift``) times its unit."""
    sm = layer.softmax
    unit = _probability_unit(sm)

    def forward(a: torch.Tensor, value: torch.Tensor | None = None) -> torch.Tensor:
        codes = agq_codes(a, sm.scale, sm.tau, sm.act_bits).long().cpu().numpy()
        weights = probability_operands(sm, codes)
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
            output = bundle.gemm(name).output
            if isinstance(output, HostOutput):
                module.register_forward_hook(_host_rounding(output))
        quantizer = getattr(module, "softmax_quantizer", None)
        if isinstance(quantizer, AGQQuantizer) and quantizer.enabled:
            quantizer.forward = _agq_as_exported(bundle.attention(name))
    return model


def _integer_layer(layer: GemmLayer, dequantize, codes_from=None) -> callable:
    """A QuantLinear/QuantConv2d forward that runs ``layer`` through the integer kernels; ``codes_from``
    turns the float input into the layer's input codes (default: the layer's own input encoding)."""
    encode = codes_from or (lambda x: encode_input(layer.input, x))

    def forward(x: torch.Tensor) -> torch.Tensor:
        y = run_layer(layer, encode(x.detach().cpu().numpy()))
        return torch.from_numpy(dequantize(y)).to(device=x.device, dtype=x.dtype)
    return forward


def attention_values_unit(layer: AttentionLayer) -> float:
    """Real value of one step of an attention layer's A.V accumulator: probability unit times v's scale."""
    return _probability_unit(layer.softmax) * layer.v.scale


def attention_values_codes(layer: AttentionLayer) -> callable:
    """Output-projection input codes from the float64 A.V product: the product is an integer accumulator
    times one unit (``attention_values_unit``), recovered exactly and requantized as the accelerator
    does (``sw/ref/layers.run_attention_values``)."""
    unit = attention_values_unit(layer)

    def codes(x):
        steps = x / unit
        acc = np.round(steps)
        gap = float(np.abs(steps - acc).max()) if acc.size else 0.0
        if gap > _SNAP_TOLERANCE:
            raise ValueError(f"attention '{layer.name}': A.V is {gap:.3g} accumulator steps off the integer grid")
        return requantize_output(layer.output, acc.astype(np.int64))
    return codes


def integer_kernel_model(qmodel: SegmentModel, bundle: Bundle) -> SegmentModel:
    """``host_emulating_model`` with the bundle's integer kernels doing every quantized layer's arithmetic
    (see the module docstring); feed it float64 images and boxes."""
    model = host_emulating_model(qmodel, bundle)
    modules = dict(model.named_modules())
    av_codes, consumers = {}, {}
    for name, attn in modules.items():
        if isinstance(attn, ATTENTION_TYPES):
            proj = "out_proj" if isinstance(attn, QuantDecoderAttention) else "proj"
            av_codes[f"{name}.{proj}"] = attention_values_codes(bundle.attention(name))
            for proj_name, (scale, zero, _bits, _) in projection_consumers(attn).items():
                consumers[f"{name}.{proj_name}"] = (np.asarray(scale, np.float64), np.asarray(zero, np.int64))
    for name, module in modules.items():
        if not isinstance(module, (QuantLinear, QuantConv2d)):
            continue
        layer = bundle.gemm(name)
        if isinstance(layer.output, HostOutput):
            dequantize = lambda y, s=layer.output.scale: y.astype(np.float64) * s  # noqa: E731
        else:
            # q/k/v codes as the values their quantizers read back to the same codes.
            scale, zero = consumers[name]
            dequantize = lambda y, s=scale, z=zero: (y - z) * s  # noqa: E731
        module.forward = _integer_layer(layer, dequantize, av_codes.get(name))
        module._forward_hooks.clear()  # host codes already come out of the kernels
    return model
