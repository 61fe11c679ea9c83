"""One bundle layer at a time: input codes in, output codes out, exactly as the hardware computes.

A ``linear`` or ``conv2d`` layer's output is either the next quantizer's codes (``output.to`` =
``codes``: q/k/v projections) or a host code (``host``: signed 16-bit, one real scale per layer) that a
host step (residual add, LayerNorm, GELU, ...) reads. An ``attention`` layer is two integer stages
around one host step:

    scores = (q - z_q)(k - z_k)^T                 integer
    codes_A = encode(softmax(scores * unit + bias))   host boundary: softmax and its encoding
    out = requantize(A.V)                          integer, codes of the output projection's input
"""

from __future__ import annotations

import numpy as np

from .arith import requantize
from .bundle import Layer
from .host import add_decomposed_rel_pos, agq_encode, softmax, uniform_encode
from .kernels import (agq_weights, attention_scores, attention_values, combine_partials, conv2d_partial,
                      depthwise_conv2d_partial, linear_partials, signed_weight)


def _requantize(layer: Layer, acc: np.ndarray, channel_axis: int) -> np.ndarray:
    out = layer.params["output"]
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    return requantize(acc, layer["out_multiplier"].reshape(shape), layer["out_shift"].reshape(shape),
                      layer["out_zero_point"].reshape(shape), out["min"], out["max"])


def linear_accumulator(layer: Layer, codes: np.ndarray) -> np.ndarray:
    """The layer's single accumulator [..., O], bias included."""
    fmt = layer.params["input"]
    weight = signed_weight(layer["weight_codes"], layer["weight_zero_point"])
    kind = fmt["format"]
    if kind == "uniform":
        partials = linear_partials(codes, weight, "uniform", zero_point=fmt["zero_point"])
    elif kind == "cag":
        partials = linear_partials(codes, weight, "cag", zero_point=layer["group_zero_point"],
                                   groups=layer["channel_group"])
    else:
        partials = linear_partials(codes, weight, "hluq", log_levels=fmt["log_levels"])
    return combine_partials(partials, layer["group_multiplier"]) + layer["bias_acc"]


def run_linear(layer: Layer, codes: np.ndarray) -> np.ndarray:
    return _requantize(layer, linear_accumulator(layer, codes), -1)


def conv_accumulator(layer: Layer, codes: np.ndarray) -> np.ndarray:
    p = layer.params
    weight = signed_weight(layer["weight_codes"], layer["weight_zero_point"])
    z = p["input"]["zero_point"]
    if p["groups"] > 1 and p["groups"] == weight.shape[0] and weight.shape[1] == 1:
        acc = depthwise_conv2d_partial(codes, z, weight, p["stride"], p["padding"])
    else:
        acc = conv2d_partial(codes, z, weight, p["stride"], p["padding"], p["groups"])
    return acc * int(layer["group_multiplier"][0]) + layer["bias_acc"].reshape(1, -1, 1, 1)


def run_conv(layer: Layer, codes: np.ndarray) -> np.ndarray:
    return _requantize(layer, conv_accumulator(layer, codes), 1)


def run_layer(layer: Layer, codes: np.ndarray) -> np.ndarray:
    if layer.kind == "linear":
        return run_linear(layer, codes)
    if layer.kind == "conv2d":
        return run_conv(layer, codes)
    raise ValueError(f"layer '{layer.name}' is a {layer.kind}; use the attention functions")


def attention_probabilities(layer: Layer, q_codes: np.ndarray, k_codes: np.ndarray) -> np.ndarray:
    """Codes of the post-softmax map [..., heads, Nq, Nk] (host boundary: softmax and encoding)."""
    p = layer.params
    acc = attention_scores(q_codes, p["q"]["zero_point"], k_codes, p["k"]["zero_point"])
    logits = acc * (p["q"]["scale"] * p["k"]["scale"] * p["logit_scale"])
    if "attention_bias" in layer.tensors:  # TinyViT: learned per-head biases
        logits = logits + layer["attention_bias"].astype(np.float64)
    if "rel_pos_h" in layer.tensors:  # SAM ViT: from the dequantized, unscaled q
        side = int(round(np.sqrt(q_codes.shape[-2])))
        q_hat = (np.asarray(q_codes, np.float64) - p["q"]["zero_point"]) * p["q"]["scale"]
        logits = add_decomposed_rel_pos(logits, q_hat, layer["rel_pos_h"].astype(np.float64),
                                        layer["rel_pos_w"].astype(np.float64), (side, side))
    probs = softmax(logits)
    sm = p["softmax"]
    if sm["format"] == "agq":
        return agq_encode(probs, sm["scale"], sm["tau"], sm["bits"])
    return uniform_encode(probs, sm["scale"], sm["zero_point"], sm["bits"])


def run_attention_values(layer: Layer, prob_codes: np.ndarray, v_codes: np.ndarray) -> np.ndarray:
    """Output projection input codes [..., heads, Nq, d] from probability and value codes."""
    p, sm = layer.params, layer.params["softmax"]
    if sm["format"] == "agq":
        weights = agq_weights(prob_codes, sm["tau"], layer["lut"], sm["max_shift"], sm["bits"])
    else:
        weights = np.asarray(prob_codes, np.int64) - int(sm["zero_point"])
    acc = attention_values(weights, v_codes, p["v"]["zero_point"])
    out = p["output"]
    return requantize(acc, out["multiplier"], out["shift"], out["zero_point"], out["min"], out["max"])
