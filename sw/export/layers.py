"""From a calibrated fake-quant model to bundle layers: integer weights, input encodings, requant constants.

Linear and conv layers: unsigned weight codes with a per-output-channel zero point and scale, the input
encoding (uniform s/z; CAG group table, channel labels and permutation; HLUQ m, s_log, s_uni and code
layout), integer group multipliers, the bias as accumulator units, and per-output-channel fixed-point
requantization (multiplier, shift, zero point, clamp) into either the consuming quantizer's codes
(q/k/v projections) or a signed 16-bit host code.

Attention layers: the q/k/v encodings, the logit scale (and TinyViT's attention biases, added on the
host before softmax; SAM ViT's relative-position tables, likewise), the softmax quantizer (AGQ: tau, s, the fractional-factor LUT and the largest
shift Q; or uniform), and the requantization of A.V into the output projection's input codes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from ..bundle import (AgqCodes, AttentionLayer, CagCodes, CodesOutput, ConvLayer, HluqCodes, HostOutput, InputCodes,
                      LinearLayer, UniformCodes, Weights)
from ..bundle.fixed_point import MAX_ACC_BITS, quantize_multiplier
from ..errors import SamhwError
from ..quant.agq import AGQQuantizer
from ..quant.cag import CAGQuantizer
from ..quant.hluq import HLUQQuantizer
from ..quant.qmodules import QuantConv2d, QuantDecoderAttention, QuantLinear, QuantSamEncoderAttention, QuantTinyViTAttention
from ..quant.quantizer import UniformQuantizer

HOST_BITS = 16
# Host codes are symmetric int16 with twice the largest |y| seen in calibration as full scale, so an
# unseen image has a factor 2 of headroom before clamping; the resolution stays 2^-14 of that maximum.
HOST_HEADROOM = 2.0
# Multipliers m_g = round(2^F u_g / u_min), F as large as the 47-bit accumulator allows (up to 24): with
# fewer fraction bits the ratio rounding alone flipped host codes of CAG-grouped fc1 layers (their
# partial sums cancel) more often than the fake-quant model's own float32 error does.
GROUP_FRAC_BITS = 24
LUT_FRAC_BITS = 15  # AGQ fractional factor 2^(-r/tau) as a 15-bit fraction (lut[0] = 2^15); tau = 1 needs none
ATTENTION_TYPES = (QuantTinyViTAttention, QuantSamEncoderAttention, QuantDecoderAttention)


def _np(t: torch.Tensor, dtype) -> np.ndarray:
    return t.detach().cpu().numpy().astype(dtype)


def _uniform_codes(q: nn.Module, where: str) -> UniformCodes:
    if type(q) is not UniformQuantizer or q.ch_axis is not None:
        raise SamhwError(f"{where}: expected a per-tensor uniform quantizer, got {type(q).__name__}")
    return UniformCodes(act_bits=q.bits, scale=float(q.scale), zero_point=int(q.zero_point))


def _input_codes(q: nn.Module, name: str) -> tuple[InputCodes, list[float], float]:
    """(code format, unit of each partial sum, worst |operand|) of a layer's input quantizer."""
    if isinstance(q, HLUQQuantizer):
        levels = q.log_levels
        codes = HluqCodes(act_bits=q.bits, m=float(q.lo), s_log=float(q.s_log), s_uni=float(q.s_uni),
                          log_levels=levels)
        units = [codes.s_log * 2.0 ** -(levels - 1), codes.s_uni]
        return codes, units, float(max(2 ** (levels - 1), 2**q.bits - 1 - levels))
    if isinstance(q, CAGQuantizer):
        codes = CagCodes(act_bits=q.bits, channel_group=_np(q.labels.long(), np.int64),
                         permutation=_np(q.permutation, np.int64), group_scale=_np(q.scale, np.float32),
                         group_zero_point=_np(q.zero_point, np.int64))
        return codes, [float(s) for s in q.scale], float(2**q.bits - 1)
    codes = _uniform_codes(q, name)
    return codes, [codes.scale], float(2**q.bits - 1)


def _group_multipliers(units: list[float], weight_abs_sum: float, worst_operand: float, bias_steps: float,
                       name: str) -> tuple[np.ndarray, int]:
    """(m_g, F) with the largest F <= GROUP_FRAC_BITS whose worst-case accumulator fits; ``bias_steps`` is
    the largest |bias| in accumulator steps at F = 0.

    Single-group layers get m = 2^F too: the bias then lands in the accumulator with F fractional
    bits. Without them its rounding (half an accumulator step) alone flipped a large share of the 16-bit
    host codes of small-reduction layers (depthwise convs), whose host step is finer than one
    accumulator step."""
    u_min = min(units)
    lowest = 0 if len(units) == 1 else 8
    for frac in range(GROUP_FRAC_BITS, lowest - 1, -1):
        m = np.array([round(2**frac * u / u_min) for u in units], np.int64)
        if worst_operand * weight_abs_sum * float(m.max()) + bias_steps * 2.0**frac < 2.0 ** (MAX_ACC_BITS - 1):
            return m, frac
    raise SamhwError(f"layer '{name}': grouped accumulator would exceed {MAX_ACC_BITS} bits "
                     f"(group scales span {max(units) / u_min:.3g}x)")


def _requant_constants(unit: np.ndarray, out_scale: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point (multiplier, shift) of each output channel's rescale unit / out_scale."""
    pairs = []
    for u, s in zip(unit.tolist(), out_scale.tolist()):
        try:
            pairs.append(quantize_multiplier(u / s))
        except ValueError as exc:
            raise SamhwError(f"layer '{name}': output rescale {u / s:.3g} not representable ({exc})") from None
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


def gemm_layer(name: str, module: nn.Module, consumer: tuple[np.ndarray, np.ndarray, int, str] | None,
               host_max: float | None) -> LinearLayer | ConvLayer:
    """Bundle entry of a QuantLinear / QuantConv2d. ``consumer``: (scale [O], zero point [O], bits,
    description) when the output feeds quantizers directly; else ``host_max`` (largest |y| seen) sets
    the host code scale."""
    wq = module.weight_quantizer
    with torch.no_grad():
        w_codes = wq.codes(module.weight.detach())
    w_zero = wq.zero_point.detach().reshape(-1)
    w_scale = wq.scale.detach().reshape(-1).double()
    w_int = (w_codes - w_zero.reshape(-1, *[1] * (w_codes.dim() - 1))).double()
    codes, units, worst = _input_codes(module.input_quantizer, name)
    weight_abs_sum = float(w_int.abs().reshape(w_int.shape[0], -1).sum(1).max())
    bias = module.bias.detach().double() if module.bias is not None else torch.zeros(w_int.shape[0], dtype=torch.float64)
    constant = bias.clone()
    if isinstance(codes, HluqCodes):  # x = m + value(code): m * sum_c w_hat[o, c] is a per-output constant
        constant += codes.m * (w_int.reshape(w_int.shape[0], -1).sum(1) * w_scale)
    bias_steps = float((constant.abs() / (min(units) * w_scale)).max())
    # Each channel feeds at most two partial sums (HLUQ's uniform codes feed both paths).
    multipliers, frac = _group_multipliers(units, weight_abs_sum, worst * min(len(units), 2), bias_steps, name)
    unit = (min(units) * 2.0**-frac) * w_scale.numpy()  # real value of one accumulator step, per output
    if consumer is not None:
        out_scale, out_zero, bits, to = consumer
        multiplier, shift = _requant_constants(unit, np.asarray(out_scale, np.float64), name)
        output = CodesOutput(act_bits=bits, consumers=to, multiplier=multiplier, shift=shift,
                             zero_point=np.asarray(out_zero, np.int64))
    else:
        host_scale = max(HOST_HEADROOM * float(host_max or 0.0), 1e-12) / (2 ** (HOST_BITS - 1) - 1)
        multiplier, shift = _requant_constants(unit, np.full(len(unit), host_scale), name)
        output = HostOutput(host_bits=HOST_BITS, scale=host_scale, multiplier=multiplier, shift=shift)
    common = dict(
        name=name, weights=Weights(weight_bits=wq.bits, codes=_np(w_codes, np.uint8), zero_point=_np(w_zero, np.int64),
                                   scale=_np(wq.scale.reshape(-1), np.float32)),
        bias=_np(bias, np.float32), bias_acc=np.round(constant.numpy() / unit).astype(np.int64), input=codes,
        group_multiplier=multipliers, group_frac_bits=frac, output=output)
    if isinstance(module, QuantConv2d):
        if module.stride[0] != module.stride[1] or module.padding[0] != module.padding[1] or module.dilation != (1, 1):
            raise SamhwError(f"layer '{name}': only square stride/padding without dilation is supported")
        if not isinstance(codes, UniformCodes):
            raise SamhwError(f"layer '{name}': conv inputs must be uniformly quantized")
        return ConvLayer(**common, stride=module.stride[0], padding=module.padding[0], groups=module.groups)
    return LinearLayer(**common)


def projection_consumers(attn: nn.Module) -> dict[str, tuple[np.ndarray, np.ndarray, int, str]]:
    """Projection name (within ``attn``) -> per-output-channel (scale, zero point, bits, description)
    of the quantizers that read its output directly."""
    enc = {k: _uniform_codes(getattr(attn, f"{k}_quantizer"), f"{k}_quantizer") for k in "qkv"}
    bits = enc["q"].act_bits

    def per_channel(which: list[str]) -> tuple[np.ndarray, np.ndarray, int, str]:
        return (np.array([enc[w].scale for w in which]), np.array([enc[w].zero_point for w in which]), bits,
                "q/k/v quantizers")

    if isinstance(attn, QuantTinyViTAttention):
        per_head = ["q"] * attn.key_dim + ["k"] * attn.key_dim + ["v"] * attn.d
        return {"qkv": per_channel(per_head * attn.num_heads)}
    if isinstance(attn, QuantSamEncoderAttention):
        dim = attn.qkv.out_features // 3
        return {"qkv": per_channel(["q"] * dim + ["k"] * dim + ["v"] * dim)}
    return {f"{k}_proj": per_channel([k] * getattr(attn, f"{k}_proj").out_features) for k in "qkv"}


def _head_dims(attn: nn.Module) -> tuple[int, int]:
    """(q/k width, v width) per head."""
    if isinstance(attn, QuantTinyViTAttention):
        return attn.key_dim, attn.d
    if isinstance(attn, QuantSamEncoderAttention):
        dim = attn.qkv.out_features // 3 // attn.num_heads
        return dim, dim
    return attn.q_proj.out_features // attn.num_heads, attn.v_proj.out_features // attn.num_heads


def attention_layer(name: str, attn: nn.Module, max_keys: int) -> AttentionLayer:
    """Bundle entry of a quantized attention (see the module docstring); ``max_keys`` is the longest
    key sequence seen in calibration, which bounds the A.V accumulator."""
    q, k, v = (_uniform_codes(getattr(attn, f"{x}_quantizer"), f"{name}.{x}_quantizer") for x in "qkv")
    proj = attn.out_proj if isinstance(attn, QuantDecoderAttention) else attn.proj
    out = _uniform_codes(proj.input_quantizer, f"{name} output projection input")
    sm_q = attn.softmax_quantizer
    tables = {}
    if isinstance(sm_q, AGQQuantizer):
        tau, bits, scale = int(sm_q.tau), sm_q.bits, float(sm_q.scale)
        lut_bits = 0 if tau == 1 else LUT_FRAC_BITS
        # |lut| <= 2^lut_bits, |v - z| < 2^bits, times 2^Q, over max_keys terms, below 2^MAX_ACC_BITS.
        room = MAX_ACC_BITS - lut_bits - bits - math.ceil(math.log2(max(max_keys, 2)))
        softmax = AgqCodes(act_bits=bits, tau=tau, scale=scale, max_shift=max(0, min((2**bits - 2) // tau, room)),
                           lut_frac_bits=lut_bits,
                           lut=np.array([round(2**lut_bits * 2 ** (-r / tau)) for r in range(tau)], np.int64))
        unit = scale * 2.0 ** -(lut_bits + softmax.max_shift) * v.scale
    else:
        softmax = _uniform_codes(sm_q, f"{name}.softmax_quantizer")
        unit = softmax.scale * v.scale
    if isinstance(attn, QuantTinyViTAttention):
        logit_scale = float(attn.scale)
        tables["attention_bias"] = _np(attn.attention_biases[:, attn.attention_bias_idxs], np.float32)
    elif isinstance(attn, QuantSamEncoderAttention):
        if attn.use_rel_pos:
            tables["rel_pos_h"] = _np(attn.rel_pos_h, np.float32)
            tables["rel_pos_w"] = _np(attn.rel_pos_w, np.float32)
        logit_scale = float(attn.scale)
    else:
        logit_scale = 1.0 / math.sqrt(attn.q_proj.out_features // attn.num_heads)
    multiplier, shift = quantize_multiplier(unit / out.scale)
    output = CodesOutput(act_bits=out.act_bits, consumers="output projection input quantizer",
                         multiplier=np.array([multiplier], np.int64), shift=np.array([shift], np.int64),
                         zero_point=np.array([out.zero_point], np.int64))
    key_dim, value_dim = _head_dims(attn)
    return AttentionLayer(name=name, heads=attn.num_heads, key_dim=key_dim, value_dim=value_dim, max_keys=max_keys,
                          logit_scale=logit_scale, q=q, k=k, v=v, softmax=softmax, output=output, **tables)
