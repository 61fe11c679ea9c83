"""Integer layers of a bundle: linear and conv GEMMs, and attentions with their two integer stages.

A GEMM layer's accumulator, one per output channel o, is

    acc[o] = sum_g group_multiplier[g] * P_g[o] + bias_acc[o]      (|acc| < 2^47)

with one partial sum P_g per input group (``CodeFormat.partial_sums``), each summing operand x weight
over the reduction; ``output`` requantizes it. An attention is QK^T (``scores``), a host softmax
encoded with ``softmax``, then A.V (``values``) requantized into the output projection's input codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .codes import CagCodes, InputCodes, SoftmaxCodes, UniformCodes, code_max
from .fixed_point import MAX_ACC_BITS
from .outputs import CodesOutput, LayerOutput
from .record import ContractError, Record, check_length, check_range, require, tensor, value


class Layer(Record):
    TAG_KEY: ClassVar[str] = "kind"
    name: str


@dataclass(frozen=True, eq=False)
class Weights(Record):
    """Unsigned weight codes with a per-output-channel zero point and scale: w = scale (code - zero_point)."""

    weight_bits: int = value("weight code width")
    codes: np.ndarray = tensor("uint8", "O,...", "weight codes: [O, C] (linear) or [O, C/groups, kh, kw] (conv)")
    zero_point: np.ndarray = tensor("int64", "O", "weight code of real 0, per output channel")
    scale: np.ndarray = tensor("float32", "O", "real value of one weight code step, per output channel")

    @property
    def out_channels(self) -> int:
        return int(self.codes.shape[0])

    @property
    def reduction(self) -> int:
        """Terms summed into one output: C, or C/groups * kh * kw for a conv."""
        return int(np.prod(self.codes.shape[1:]))

    def check(self) -> None:
        require(2 <= self.weight_bits <= 8, "weight_bits", f"unsupported weight width {self.weight_bits} (2 to 8)")
        check_length(self.zero_point, self.out_channels, "zero_point", "one per output channel")
        check_length(self.scale, self.out_channels, "scale", "one per output channel")
        check_range(self.zero_point, 0, code_max(self.weight_bits), "zero_point")
        check_range(self.codes, 0, code_max(self.weight_bits), "codes")


@dataclass(frozen=True, eq=False)
class GemmLayer(Layer):
    """Fields shared by linear and conv layers (see the module docstring)."""

    name: str = value("module path")
    weights: Weights = value("weight codes with their zero points and scales")
    bias: np.ndarray = tensor("float32", "O", "the float bias, for the record")
    bias_acc: np.ndarray = tensor("int64", "O", "bias (and HLUQ's m * sum w term) in accumulator steps, rounded")
    input: InputCodes = value("code format of the input")
    group_multiplier: np.ndarray = tensor("int64", "P", "m_g = round(2^F u_g / u_min): each partial sum's unit as "
                                                        "a multiple of the finest")
    group_frac_bits: int = value("F, fraction bits of the group multipliers")
    output: LayerOutput = value("where the requantized accumulator goes")

    @property
    def out_channels(self) -> int:
        return self.weights.out_channels

    @property
    def reduction(self) -> int:
        return self.weights.reduction

    def check(self) -> None:
        o = self.out_channels
        check_length(self.bias, o, "bias", "one per output channel")
        check_length(self.bias_acc, o, "bias_acc", "one per output channel")
        check_length(self.output.multiplier, o, "output.multiplier", "one per output channel")
        check_length(self.group_multiplier, self.input.partial_sums, "group_multiplier",
                     f"one per partial sum of {self.input.TAG} inputs")
        check_range(self.group_multiplier, 1, (1 << MAX_ACC_BITS) - 1, "group_multiplier")
        check_range(self.group_frac_bits, 0, MAX_ACC_BITS, "group_frac_bits")
        check_range(self.bias_acc, -(1 << MAX_ACC_BITS) + 1, (1 << MAX_ACC_BITS) - 1, "bias_acc")


@dataclass(frozen=True, eq=False)
class LinearLayer(GemmLayer):
    """A fully connected layer over the last axis: y = x W^T + b."""

    TAG: ClassVar[str] = "linear"

    @property
    def in_features(self) -> int:
        return int(self.weights.codes.shape[1])

    @property
    def out_features(self) -> int:
        return self.out_channels

    def check(self) -> None:
        require(self.weights.codes.ndim == 2, "weights.codes", "a linear layer's weight codes are [O, C]")
        super().check()
        if isinstance(self.input, CagCodes):
            require(self.input.channels == self.in_features, "input.channel_group",
                    f"has {self.input.channels} channels, the layer has {self.in_features} inputs")


@dataclass(frozen=True, eq=False)
class ConvLayer(GemmLayer):
    """A 2-d convolution with square stride and padding (padding is the zero point in code space)."""

    TAG: ClassVar[str] = "conv2d"
    input: UniformCodes = value("code format of the input (uniform only)")
    stride: int = value("stride along both axes")
    padding: int = value("padding on every side")
    groups: int = value("channel groups (groups = channels: depthwise)")

    @property
    def kernel_size(self) -> tuple[int, int]:
        return int(self.weights.codes.shape[2]), int(self.weights.codes.shape[3])

    @property
    def in_channels(self) -> int:
        return int(self.weights.codes.shape[1]) * self.groups

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.out_channels and self.weights.codes.shape[1] == 1

    def check(self) -> None:
        require(self.weights.codes.ndim == 4, "weights.codes", "a conv layer's weight codes are [O, C/groups, kh, kw]")
        super().check()
        require(self.stride >= 1 and self.padding >= 0, "stride", f"stride {self.stride}, padding {self.padding}")
        require(self.groups >= 1 and self.out_channels % self.groups == 0, "groups",
                f"{self.groups} groups do not divide {self.out_channels} output channels")


@dataclass(frozen=True)
class AttentionScores:
    """QK^T of every head: S = (q - z_q)(k - z_k)^T, integer, handed to the host softmax."""

    layer: str
    heads: int
    key_dim: int
    q: UniformCodes
    k: UniformCodes


@dataclass(frozen=True)
class AttentionValues:
    """A.V of every head: probability operands (AGQ LUT-and-shift, or code - zero point) times v - z_v,
    requantized into the output projection's input codes."""

    layer: str
    heads: int
    value_dim: int
    max_keys: int
    probabilities: SoftmaxCodes
    v: UniformCodes
    output: CodesOutput


@dataclass(frozen=True, eq=False)
class AttentionLayer(Layer):
    """Multi-head attention between its q/k/v projections and its output projection: QK^T, the host's
    softmax, A.V (``scores`` and ``values`` describe the two integer stages)."""

    TAG: ClassVar[str] = "attention"
    name: str = value("module path")
    heads: int = value("attention heads")
    key_dim: int = value("q/k width per head")
    value_dim: int = value("v width per head")
    max_keys: int = value("longest key sequence seen in calibration (bounds the A.V accumulator)")
    logit_scale: float = value("logits = S s_q s_k logit_scale before the softmax")
    q: UniformCodes = value("query codes")
    k: UniformCodes = value("key codes")
    v: UniformCodes = value("value codes")
    softmax: SoftmaxCodes = value("code format of the post-softmax map")
    output: CodesOutput = value("A.V requantized into the output projection's input codes (one constant)")
    attention_bias: np.ndarray | None = tensor("float32", "heads,N,N", "TinyViT: learned bias added to the logits",
                                               optional=True)
    rel_pos_h: np.ndarray | None = tensor("float32", "2h-1,d", "SAM ViT: relative-position table along height",
                                          optional=True)
    rel_pos_w: np.ndarray | None = tensor("float32", "2w-1,d", "SAM ViT: relative-position table along width",
                                          optional=True)

    @property
    def scores(self) -> AttentionScores:
        return AttentionScores(self.name, self.heads, self.key_dim, self.q, self.k)

    @property
    def values(self) -> AttentionValues:
        return AttentionValues(self.name, self.heads, self.value_dim, self.max_keys, self.softmax, self.v, self.output)

    def check(self) -> None:
        for name in ("heads", "key_dim", "value_dim", "max_keys"):
            require(getattr(self, name) >= 1, name, f"must be at least 1, got {getattr(self, name)}")
        check_length(self.output.multiplier, 1, "output.multiplier", "one constant for every output")
        if self.attention_bias is not None:
            require(self.attention_bias.shape[0] == self.heads, "attention_bias", "needs one table per head")
        if (self.rel_pos_h is None) != (self.rel_pos_w is None):
            raise ContractError("rel_pos_h", "rel_pos_h and rel_pos_w come together")

