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

from ..errors import SamhwError
from ..quant.agq import AGQQuantizer
from ..quant.cag import CAGQuantizer
from ..quant.hluq import HLUQQuantizer
from ..quant.qmodules import QuantConv2d, QuantDecoderAttention, QuantLinear, QuantSamEncoderAttention, QuantTinyViTAttention
from ..quant.quantizer import UniformQuantizer
from ..ref.arith import MAX_ACC_BITS, quantize_multiplier
from ..ref.bundle import Layer

HOST_BITS = 16
# Host codes are symmetric int16 with twice the largest |y| seen in calibration as full scale, so an
# unseen image has a factor 2 of headroom before clamping; the resolution stays 2^-14 of that maximum.
HOST_HEADROOM = 2.0
# Multipliers m_g = round(2^F u_g / u_min), F as large as the 47-bit accumulator allows (up to 24): at
# F = 16 the ratio rounding alone flipped ~0.5 % of the host codes of CAG-grouped fc1 layers (their
# partial sums cancel), beyond the fake-quant model's own float32 error.
GROUP_FRAC_BITS = 24
LUT_FRAC_BITS = 15  # AGQ fractional factor 2^(-r/tau) as a 15-bit fraction (lut[0] = 2^15); tau = 1 needs none
ATTENTION_TYPES = (QuantTinyViTAttention, QuantSamEncoderAttention, QuantDecoderAttention)


def _np(t: torch.Tensor, dtype) -> np.ndarray:
    return t.detach().cpu().numpy().astype(dtype)


def _uniform_params(q: nn.Module, where: str) -> dict:
    if type(q) is not UniformQuantizer or q.ch_axis is not None:
        raise SamhwError(f"{where}: expected a per-tensor uniform quantizer, got {type(q).__name__}")
    return {"format": "uniform", "bits": q.bits, "scale": float(q.scale), "zero_point": int(q.zero_point)}


def _input_encoding(q: nn.Module, name: str) -> tuple[dict, dict, list[float], float]:
    """(params, tensors, unit of each partial sum, worst |operand|) of a layer's input quantizer."""
    if isinstance(q, HLUQQuantizer):
        levels = q.log_levels
        s_log, s_uni = float(q.s_log), float(q.s_uni)
        params = {"format": "hluq", "bits": q.bits, "m": float(q.lo), "s_log": s_log, "s_uni": s_uni,
                  "log_levels": levels,
                  "code_layout": "0: zero (x = m); 1..L: log, x = m + s_log * 2^-(L - code); "
                                 "L+1..2^k-1: uniform, x = m + s_log + (code - L) * s_uni"}
        units = [s_log * 2.0 ** -(levels - 1), s_uni]
        return params, {}, units, float(max(2 ** (levels - 1), 2**q.bits - 1 - levels))
    if isinstance(q, CAGQuantizer):
        labels = q.labels.long()
        params = {"format": "cag", "bits": q.bits, "groups": int(labels.max()) + 1}
        tensors = {"channel_group": _np(labels, np.int64), "permutation": _np(q.permutation, np.int64),
                   "group_scale": _np(q.scale, np.float32), "group_zero_point": _np(q.zero_point, np.int64)}
        return params, tensors, [float(s) for s in q.scale], float(2**q.bits - 1)
    params = _uniform_params(q, name)
    return params, {}, [params["scale"]], float(2**q.bits - 1)


def _group_multipliers(units: list[float], weight_abs_sum: float, worst_operand: float, bias_steps: float,
                       name: str) -> tuple[np.ndarray, int]:
    """(m_g, F) with the largest F <= GROUP_FRAC_BITS whose worst-case accumulator fits; ``bias_steps`` is
    the largest |bias| in accumulator steps at F = 0.

    Single-group layers get m = 2^F too: the bias then lands in the accumulator with F fractional
    bits. Without them its rounding (half an accumulator step) alone flipped 3-30 % of the 16-bit host
    codes of small-reduction layers (depthwise convs), whose host step is finer than one accumulator
    step."""
    u_min = min(units)
    lowest = 0 if len(units) == 1 else 8
    for frac in range(GROUP_FRAC_BITS, lowest - 1, -1):
        m = np.array([round(2**frac * u / u_min) for u in units], np.int64)
        if worst_operand * weight_abs_sum * float(m.max()) + bias_steps * 2.0**frac < 2.0 ** (MAX_ACC_BITS - 1):
            return m, frac
    raise SamhwError(f"layer '{name}': grouped accumulator would exceed {MAX_ACC_BITS} bits "
                     f"(group scales span {max(units) / u_min:.3g}x)")


def _requant_tensors(unit: np.ndarray, out_scale: np.ndarray, out_zero: np.ndarray, name: str) -> dict:
    pairs = []
    for u, s in zip(unit.tolist(), out_scale.tolist()):
        try:
            pairs.append(quantize_multiplier(u / s))
        except ValueError as exc:
            raise SamhwError(f"layer '{name}': output rescale {u / s:.3g} not representable ({exc})") from None
    return {"out_multiplier": np.array([p[0] for p in pairs], np.int64),
            "out_shift": np.array([p[1] for p in pairs], np.int64),
            "out_zero_point": np.asarray(out_zero, np.int64)}


def gemm_layer(name: str, module: nn.Module, consumer: tuple[np.ndarray, np.ndarray, int, str] | None,
               host_max: float | None) -> Layer:
    """Bundle entry of a QuantLinear / QuantConv2d. ``consumer``: (scale [O], zero point [O], bits,
    description) when the output feeds quantizers directly; else ``host_max`` (largest |y| seen) sets
    the host code scale."""
    wq = module.weight_quantizer
    with torch.no_grad():
        w_codes = wq.codes(module.weight.detach())
    w_zero = wq.zero_point.detach().reshape(-1)
    w_scale = wq.scale.detach().reshape(-1).double()
    w_int = (w_codes - w_zero.reshape(-1, *[1] * (w_codes.dim() - 1))).double()
    params, tensors, units, worst = _input_encoding(module.input_quantizer, name)
    weight_abs_sum = float(w_int.abs().reshape(w_int.shape[0], -1).sum(1).max())
    bias = module.bias.detach().double() if module.bias is not None else torch.zeros(w_int.shape[0], dtype=torch.float64)
    constant = bias.clone()
    if params["format"] == "hluq":  # x = m + value(code): m * sum_c w_hat[o, c] is a per-output constant
        constant += params["m"] * (w_int.reshape(w_int.shape[0], -1).sum(1) * w_scale)
    bias_steps = float((constant.abs() / (min(units) * w_scale)).max())
    # Each channel feeds at most two partial sums (HLUQ's uniform codes feed both paths).
    multipliers, frac = _group_multipliers(units, weight_abs_sum, worst * min(len(units), 2), bias_steps, name)
    unit = (min(units) * 2.0**-frac) * w_scale.numpy()  # real value of one accumulator step, per output
    bias_acc = np.round(constant.numpy() / unit).astype(np.int64)
    if consumer is not None:
        out_scale, out_zero, bits, to = consumer
        output = {"to": "codes", "consumers": to, "bits": bits, "min": 0, "max": 2**bits - 1}
    else:
        host_scale = max(HOST_HEADROOM * float(host_max or 0.0), 1e-12) / (2 ** (HOST_BITS - 1) - 1)
        out_scale = np.full(len(unit), host_scale)
        out_zero = np.zeros(len(unit), np.int64)
        output = {"to": "host", "bits": HOST_BITS, "scale": host_scale,
                  "min": -(2 ** (HOST_BITS - 1) - 1), "max": 2 ** (HOST_BITS - 1) - 1}
    output["rounding"] = "round half up: (acc * M + 2^(shift-1)) >> shift, then + zero point, clamp"
    tensors.update({
        "weight_codes": _np(w_codes, np.uint8), "weight_zero_point": _np(w_zero, np.int64),
        "weight_scale": _np(wq.scale.reshape(-1), np.float32), "bias": _np(bias, np.float32),
        "bias_acc": bias_acc, "group_multiplier": multipliers,
        **_requant_tensors(unit, np.asarray(out_scale, np.float64), out_zero, name),
    })
    layer_params = {"input": params, "output": output, "group_frac_bits": frac, "weight_bits": wq.bits,
                    "weight_format": f"unsigned {wq.bits}-bit codes, per-output-channel zero point and scale"}
    if isinstance(module, QuantConv2d):
        stride, padding, groups = module.stride[0], module.padding[0], module.groups
        if module.stride[0] != module.stride[1] or module.padding[0] != module.padding[1] or module.dilation != (1, 1):
            raise SamhwError(f"layer '{name}': only square stride/padding without dilation is supported")
        layer_params.update(stride=stride, padding=padding, groups=groups)
        if params["format"] != "uniform":
            raise SamhwError(f"layer '{name}': conv inputs must be uniformly quantized")
        return Layer(name, "conv2d", layer_params, tensors)
    layer_params.update(in_features=module.in_features, out_features=module.out_features)
    return Layer(name, "linear", layer_params, tensors)


def projection_consumers(attn: nn.Module) -> dict[str, tuple[np.ndarray, np.ndarray, int, str]]:
    """Projection name (within ``attn``) -> per-output-channel (scale, zero point, bits, description)
    of the quantizers that read its output directly."""
    qs = {"q": attn.q_quantizer, "k": attn.k_quantizer, "v": attn.v_quantizer}
    enc = {k: _uniform_params(q, f"{k}_quantizer") for k, q in qs.items()}
    bits = enc["q"]["bits"]

    def per_channel(which: list[str]) -> tuple[np.ndarray, np.ndarray, int, str]:
        return (np.array([enc[w]["scale"] for w in which]), np.array([enc[w]["zero_point"] for w in which]), bits,
                "q/k/v quantizers")

    if isinstance(attn, QuantTinyViTAttention):
        per_head = ["q"] * attn.key_dim + ["k"] * attn.key_dim + ["v"] * attn.d
        return {"qkv": per_channel(per_head * attn.num_heads)}
    if isinstance(attn, QuantSamEncoderAttention):
        dim = attn.qkv.out_features // 3
        return {"qkv": per_channel(["q"] * dim + ["k"] * dim + ["v"] * dim)}
    return {f"{k}_proj": per_channel([k] * getattr(attn, f"{k}_proj").out_features) for k in "qkv"}


def attention_layer(name: str, attn: nn.Module, max_keys: int) -> Layer:
    """Bundle entry of a quantized attention (see the module docstring); ``max_keys`` is the longest
    key sequence seen in calibration, which bounds the A.V accumulator."""
    q, k, v = (_uniform_params(getattr(attn, f"{x}_quantizer"), f"{name}.{x}_quantizer") for x in "qkv")
    proj = attn.out_proj if isinstance(attn, QuantDecoderAttention) else attn.proj
    out = _uniform_params(proj.input_quantizer, f"{name} output projection input")
    sm_q = attn.softmax_quantizer
    tensors = {}
    if isinstance(sm_q, AGQQuantizer):
        tau, bits, scale = int(sm_q.tau), sm_q.bits, float(sm_q.scale)
        lut_bits = 0 if tau == 1 else LUT_FRAC_BITS
        # |lut| <= 2^lut_bits, |v - z| < 2^bits, times 2^Q, over max_keys terms, below 2^MAX_ACC_BITS.
        room = MAX_ACC_BITS - lut_bits - bits - math.ceil(math.log2(max(max_keys, 2)))
        max_shift = max(0, min((2**bits - 2) // tau, room))
        softmax = {"format": "agq", "bits": bits, "tau": tau, "scale": scale, "max_shift": max_shift,
                   "lut_frac_bits": lut_bits, "zero_code": 2**bits - 1,
                   "dropped": "codes with code // tau > max_shift contribute 0" if max_shift < (2**bits - 2) // tau
                   else "none"}
        tensors["lut"] = np.array([round(2**lut_bits * 2 ** (-r / tau)) for r in range(tau)], np.int64)
        unit = scale * 2.0 ** -(lut_bits + max_shift) * v["scale"]
    else:
        softmax = _uniform_params(sm_q, f"{name}.softmax_quantizer")
        unit = softmax["scale"] * v["scale"]
    if isinstance(attn, QuantTinyViTAttention):
        logit_scale = float(attn.scale)
        tensors["attention_bias"] = _np(attn.attention_biases[:, attn.attention_bias_idxs], np.float32)
    elif isinstance(attn, QuantSamEncoderAttention):
        if attn.use_rel_pos:
            tensors["rel_pos_h"] = _np(attn.rel_pos_h, np.float32)
            tensors["rel_pos_w"] = _np(attn.rel_pos_w, np.float32)
        logit_scale = float(attn.scale)
    else:
        logit_scale = 1.0 / math.sqrt(attn.q_proj.out_features // attn.num_heads)
    multiplier, shift = quantize_multiplier(unit / out["scale"])
    params = {"heads": attn.num_heads, "q": q, "k": k, "v": v, "logit_scale": logit_scale, "softmax": softmax,
              "max_keys": max_keys,
              "output": {"to": "codes", "consumers": "output projection input quantizer", "bits": out["bits"],
                         "multiplier": multiplier, "shift": shift, "zero_point": out["zero_point"],
                         "min": 0, "max": 2 ** out["bits"] - 1}}
    return Layer(name, "attention", params, tensors)
