"""Quantized stand-ins for the GEMM-bearing modules.

Each module quantizes what the integer hardware consumes: the input activation (per tensor) and the
weight (per output channel). The bias stays float; it is folded into the integer accumulator at
export time.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .quantizer import UniformQuantizer


class _CachedWeight:
    """Reuses the fake-quantized weight between forwards at inference time.

    The decoder runs once per prompt batch, so re-quantizing every weight on every call would
    dominate evaluation. The cache key is the version of the weight and of the quantizer parameters,
    so any in-place change (calibration, reconstruction) invalidates it; with autograd on it is
    bypassed so gradients flow.
    """

    _cache_key = None
    _cache = None

    def quantized_weight(self) -> torch.Tensor:
        wq = self.weight_quantizer
        if torch.is_grad_enabled() or not wq.enabled:
            return wq(self.weight)
        rounding = wq.round_up
        key = (self.weight._version, id(wq.scale), wq.scale._version, id(wq.zero_point), wq.zero_point._version,
               id(rounding), None if rounding is None else rounding._version)
        if key != self._cache_key:
            self._cache, self._cache_key = wq(self.weight), key
        return self._cache


class QuantLinear(_CachedWeight, nn.Module):
    def __init__(self, linear: nn.Linear, input_quantizer: UniformQuantizer, weight_quantizer: UniformQuantizer):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.input_quantizer = input_quantizer
        self.weight_quantizer = weight_quantizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quantizer(x), self.quantized_weight(), self.bias)


class QuantConv2d(_CachedWeight, nn.Module):
    def __init__(self, conv: nn.Conv2d, input_quantizer: UniformQuantizer, weight_quantizer: UniformQuantizer):
        super().__init__()
        self.weight = conv.weight
        self.bias = conv.bias
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.input_quantizer = input_quantizer
        self.weight_quantizer = weight_quantizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.input_quantizer(x), self.quantized_weight(), self.bias,
                        self.stride, self.padding, self.dilation, self.groups)


class QuantTinyViTAttention(nn.Module):
    """TinyViT window attention with q, k, v and the post-softmax map quantized.

    The forward repeats TinyViT's own op order exactly, so with quantizers off it is bit-identical
    to the original module. The learned attention biases are added in float (a host step).
    """

    def __init__(self, attn: nn.Module, factory):
        super().__init__()
        self.num_heads, self.scale, self.key_dim = attn.num_heads, attn.scale, attn.key_dim
        self.d, self.dh = attn.d, attn.dh
        self.norm, self.qkv, self.proj = attn.norm, attn.qkv, attn.proj
        self.attention_biases = attn.attention_biases
        self.register_buffer("attention_bias_idxs", attn.attention_bias_idxs, persistent=False)
        self.q_quantizer, self.k_quantizer, self.v_quantizer = factory.act(), factory.act(), factory.act()
        self.softmax_quantizer = factory.softmax()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        x = self.norm(x)
        qkv = self.qkv(x)
        q, k, v = qkv.view(B, N, self.num_heads, -1).split([self.key_dim, self.key_dim, self.d], dim=3)
        q = self.q_quantizer(q.permute(0, 2, 1, 3))
        k = self.k_quantizer(k.permute(0, 2, 1, 3))
        v = self.v_quantizer(v.permute(0, 2, 1, 3))
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.attention_biases[:, self.attention_bias_idxs]
        attn = self.softmax_quantizer(attn.softmax(dim=-1), value=v)
        x = (attn @ v).transpose(1, 2).reshape(B, N, self.dh)
        return self.proj(x)


class QuantSamEncoderAttention(nn.Module):
    """SAM ViT attention with q, k, v and the post-softmax map quantized.

    The decomposed relative-position term is computed from the quantized q, as PTQ4SAM does
    (methods.md §1.3), and added in float.
    """

    def __init__(self, attn: nn.Module, factory):
        super().__init__()
        self.num_heads, self.scale, self.use_rel_pos = attn.num_heads, attn.scale, attn.use_rel_pos
        self.qkv, self.proj = attn.qkv, attn.proj
        if self.use_rel_pos:
            self.rel_pos_h, self.rel_pos_w = attn.rel_pos_h, attn.rel_pos_w
        self.q_quantizer, self.k_quantizer, self.v_quantizer = factory.act(), factory.act(), factory.act()
        self.softmax_quantizer = factory.softmax()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from segment_anything.modeling.image_encoder import add_decomposed_rel_pos

        B, H, W, _ = x.shape
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, B * self.num_heads, H * W, -1).unbind(0)
        q, k, v = self.q_quantizer(q), self.k_quantizer(k), self.v_quantizer(v)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if self.use_rel_pos:
            attn = add_decomposed_rel_pos(attn, q, self.rel_pos_h, self.rel_pos_w, (H, W), (H, W))
        attn = self.softmax_quantizer(attn.softmax(dim=-1), value=v)
        x = (attn @ v).view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
        return self.proj(x)


class QuantDecoderAttention(nn.Module):
    """SAM two-way decoder attention: q, k, v quantized after projection (before the head split,
    one quantizer per tensor) and the post-softmax map quantized."""

    def __init__(self, attn: nn.Module, factory):
        super().__init__()
        self.num_heads, self.internal_dim = attn.num_heads, attn.internal_dim
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj
        self.q_quantizer, self.k_quantizer, self.v_quantizer = factory.act(), factory.act(), factory.act()
        self.softmax_quantizer = factory.softmax()

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    # The forward in pieces, so that PCC (sw/quant/pcc.py) can re-evaluate one side of the attention
    # map per clipping candidate without running the rest of the module.
    def query(self, q: torch.Tensor) -> torch.Tensor:
        return self.split_heads(self.q_quantizer(self.q_proj(q)))

    def key(self, k: torch.Tensor) -> torch.Tensor:
        return self.split_heads(self.k_quantizer(self.k_proj(k)))

    @staticmethod
    def probabilities(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The float post-softmax map of projected, head-split q and k."""
        attn = q @ k.permute(0, 1, 3, 2)
        attn = attn / math.sqrt(q.shape[-1])
        return torch.softmax(attn, dim=-1)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k = self.query(q), self.key(k)
        v = self.split_heads(self.v_quantizer(self.v_proj(v)))
        attn = self.softmax_quantizer(self.probabilities(q, k), value=v)
        out = attn @ v
        b, n_heads, n_tokens, c_per_head = out.shape
        out = out.transpose(1, 2).reshape(b, n_tokens, n_heads * c_per_head)
        return self.out_proj(out)
