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

from ..bundle import (AgqCodes, AttentionLayer, CagCodes, ConvLayer, GemmLayer, HluqCodes, InputCodes, LayerOutput,
                      LinearLayer, UniformCodes)
from .arith import requantize
from .host import add_decomposed_rel_pos, agq_encode, softmax, uniform_encode
from .kernels import (agq_weights, attention_scores, attention_values, combine_partials, conv2d_partial,
                      depthwise_conv2d_partial, linear_partials, signed_weight)


def requantize_output(output: LayerOutput, acc: np.ndarray, channel_axis: int = -1) -> np.ndarray:
    """Codes of ``output`` from accumulators whose output channels lie on ``channel_axis``."""
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    return requantize(acc, output.multiplier.reshape(shape), output.shift.reshape(shape),
                      output.zero_point.reshape(shape), output.q_min, output.q_max)


def input_partials(codes: np.ndarray, weight: np.ndarray, fmt: InputCodes) -> list[np.ndarray]:
    """Partial accumulators [..., O] of input codes against signed weights [O, C], one per partial sum."""
    if isinstance(fmt, UniformCodes):
        return linear_partials(codes, weight, "uniform", zero_point=fmt.zero_point)
    if isinstance(fmt, CagCodes):
        return linear_partials(codes, weight, "cag", zero_point=fmt.group_zero_point, groups=fmt.channel_group)
    if isinstance(fmt, HluqCodes):
        return linear_partials(codes, weight, "hluq", log_levels=fmt.log_levels)
    raise TypeError(f"unknown input code format {type(fmt).__name__}")


def linear_accumulator(layer: LinearLayer, codes: np.ndarray) -> np.ndarray:
    """The layer's single accumulator [..., O], bias included."""
    weight = signed_weight(layer.weights.codes, layer.weights.zero_point)
    return combine_partials(input_partials(codes, weight, layer.input), layer.group_multiplier) + layer.bias_acc


def run_linear(layer: LinearLayer, codes: np.ndarray) -> np.ndarray:
    return requantize_output(layer.output, linear_accumulator(layer, codes), -1)


def conv_accumulator(layer: ConvLayer, codes: np.ndarray) -> np.ndarray:
    weight = signed_weight(layer.weights.codes, layer.weights.zero_point)
    z = layer.input.zero_point
    if layer.depthwise:
        acc = depthwise_conv2d_partial(codes, z, weight, layer.stride, layer.padding)
    else:
        acc = conv2d_partial(codes, z, weight, layer.stride, layer.padding, layer.groups)
    return acc * int(layer.group_multiplier[0]) + layer.bias_acc.reshape(1, -1, 1, 1)


def run_conv(layer: ConvLayer, codes: np.ndarray) -> np.ndarray:
    return requantize_output(layer.output, conv_accumulator(layer, codes), 1)


def run_layer(layer: GemmLayer, codes: np.ndarray) -> np.ndarray:
    if isinstance(layer, LinearLayer):
        return run_linear(layer, codes)
    if isinstance(layer, ConvLayer):
        return run_conv(layer, codes)
    raise ValueError(f"layer '{layer.name}' is a {layer.TAG} layer; use the attention functions")


def attention_probabilities(layer: AttentionLayer, q_codes: np.ndarray, k_codes: np.ndarray) -> np.ndarray:
    """Codes of the post-softmax map [..., heads, Nq, Nk] (host boundary: softmax and encoding)."""
    q, k = layer.q, layer.k
    return probabilities_from_scores(layer, attention_scores(q_codes, q.zero_point, k_codes, k.zero_point), q_codes)


def probabilities_from_scores(layer: AttentionLayer, acc: np.ndarray, q_codes: np.ndarray) -> np.ndarray:
    """The host step between the two integer stages: integer scores [..., heads, Nq, Nk] (and the query
    codes, which SAM ViT's position term reads) -> post-softmax codes."""
    q, k = layer.q, layer.k
    logits = acc * (q.scale * k.scale * layer.logit_scale)
    if layer.attention_bias is not None:  # TinyViT: learned per-head biases
        logits = logits + layer.attention_bias.astype(np.float64)
    if layer.rel_pos_h is not None:  # SAM ViT: from the dequantized, unscaled q
        side = int(round(np.sqrt(q_codes.shape[-2])))
        q_hat = (np.asarray(q_codes, np.float64) - q.zero_point) * q.scale
        logits = add_decomposed_rel_pos(logits, q_hat, layer.rel_pos_h.astype(np.float64),
                                        layer.rel_pos_w.astype(np.float64), (side, side))
    probs = softmax(logits)
    sm = layer.softmax
    if isinstance(sm, AgqCodes):
        return agq_encode(probs, sm.scale, sm.tau, sm.act_bits)
    return uniform_encode(probs, sm.scale, sm.zero_point, sm.act_bits)


def probability_operands(softmax_codes: AgqCodes | UniformCodes, prob_codes: np.ndarray) -> np.ndarray:
    """Integer A.V operands of post-softmax codes: AGQ LUT-and-shift, or code - zero point."""
    if isinstance(softmax_codes, AgqCodes):
        return agq_weights(prob_codes, softmax_codes.tau, softmax_codes.lut, softmax_codes.max_shift,
                           softmax_codes.act_bits)
    return np.asarray(prob_codes, np.int64) - int(softmax_codes.zero_point)


def run_attention_values(layer: AttentionLayer, prob_codes: np.ndarray, v_codes: np.ndarray) -> np.ndarray:
    """Output projection input codes [..., heads, Nq, d] from probability and value codes."""
    acc = attention_values(probability_operands(layer.softmax, prob_codes), v_codes, layer.v.zero_point)
    return requantize_output(layer.output, acc)
