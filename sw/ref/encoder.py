"""TinyViT image encoder (LiteMedSAM) from a bundle, in the op order of the fake-quant model.

The float stem (patch embedding and the MBConv stage with its patch merging) runs on the host: it
stays float in the quantized model (``sw/quant/prepare.py`` explains why). From the first attention
stage on, every linear and conv is an integer layer; what lies between them (LayerNorms, GELU,
residual adds, window padding and partition, the attention's softmax and position bias) is host work
in float64. Tokens are [B, L, C] and feature maps [B, C, H, W], as in the torch modules.
"""

from __future__ import annotations

import numpy as np

from ..bundle import TinyVitStructure
from . import graph_host as G
from .steps import Steps

ENCODER = "image_encoder"


def _stage(i: int) -> str:
    return f"{ENCODER}.layers.{i}"


def _mbconv(steps: Steps, name: str, x: np.ndarray) -> np.ndarray:
    shortcut = x
    x = G.gelu(steps.conv(f"{name}.conv1", x))
    x = G.gelu(steps.conv(f"{name}.conv2", x))
    return G.gelu(steps.conv(f"{name}.conv3", x) + shortcut)


def _patch_merging(steps: Steps, name: str, x: np.ndarray, integer: bool) -> np.ndarray:
    """[B, C, H, W] -> tokens [B, L, C'] through the host's float convs in the stem (``integer`` False),
    the accelerator's integer convs after it."""
    if integer:     # conv1 and conv2 hand the next conv its codes through GELU
        codes = steps.quantized_into(f"{name}.conv1", G.gelu, x, f"{name}.conv2")
        codes = steps.codes_into(f"{name}.conv2", G.gelu, codes, f"{name}.conv3")
        x = steps.from_codes(f"{name}.conv3", codes)
    else:
        x = G.gelu(steps.conv(f"{name}.conv1", x))
        x = G.gelu(steps.conv(f"{name}.conv2", x))
        x = steps.conv(f"{name}.conv3", x)
    b, c = x.shape[:2]
    return x.reshape(b, c, -1).transpose(0, 2, 1)


def _float_stage(steps: Steps, i: int, x: np.ndarray, depth: int, downsample: bool) -> np.ndarray:
    for j in range(depth):
        x = _mbconv(steps, f"{_stage(i)}.blocks.{j}", x)
    return _patch_merging(steps, f"{_stage(i)}.downsample", x, integer=False) if downsample else x


def attention(steps: Steps, name: str, x: np.ndarray) -> np.ndarray:
    """TinyViT window attention on [windows, N, C] tokens."""
    layer = steps.bundle.attention(name)
    heads, key_dim, value_dim = layer.heads, layer.key_dim, layer.value_dim
    qkv = steps.projection_codes(f"{name}.qkv", steps.layer_norm(f"{name}.norm", x))
    b, n, width = qkv.shape
    per_head = qkv.reshape(b, n, heads, width // heads).transpose(0, 2, 1, 3)
    q, k, v = per_head[..., :key_dim], per_head[..., key_dim:2 * key_dim], per_head[..., 2 * key_dim:]
    out = steps.attention(name, q, k, v)  # [windows, heads, N, d] codes of proj's input
    return steps.from_codes(f"{name}.proj", out.transpose(0, 2, 1, 3).reshape(b, n, heads * value_dim))


def block(steps: Steps, name: str, x: np.ndarray, resolution: tuple[int, int], window: int) -> np.ndarray:
    """One TinyViTBlock on tokens [B, H*W, C]."""
    h, w = resolution
    b, length, c = x.shape
    if h == window and w == window:
        attn = attention(steps, f"{name}.attn", x)
    else:
        windows, padded = G.window_partition(x.reshape(b, h, w, c), window)
        attn = G.window_unpartition(attention(steps, f"{name}.attn", windows), window, b, padded, (h, w))
        attn = attn.reshape(b, length, c)
    x = x + attn
    x = steps.quantized(f"{name}.local_conv", x.transpose(0, 2, 1).reshape(b, c, h, w))
    x = x.reshape(b, c, length).transpose(0, 2, 1)
    hidden = steps.quantized_into(f"{name}.mlp.fc1", G.gelu, steps.layer_norm(f"{name}.mlp.norm", x),
                                  f"{name}.mlp.fc2")
    return x + steps.from_codes(f"{name}.mlp.fc2", hidden)


def _attention_stage(steps: Steps, i: int, x: np.ndarray, cfg: TinyVitStructure) -> np.ndarray:
    resolution = cfg.input_resolutions[i]
    for j in range(cfg.depths[i]):
        x = block(steps, f"{_stage(i)}.blocks.{j}", x, resolution, cfg.window_sizes[i])
    if cfg.downsample[i]:
        b, _, c = x.shape
        x = _patch_merging(steps, f"{_stage(i)}.downsample", x.reshape(b, *resolution, c).transpose(0, 3, 1, 2),
                           integer=True)
    return x


def _neck(steps: Steps, tokens: np.ndarray, resolution: tuple[int, int]) -> np.ndarray:
    b, _, c = tokens.shape
    x = tokens.reshape(b, *resolution, c).transpose(0, 3, 1, 2)
    x = steps.layer_norm_2d(f"{ENCODER}.neck.1", steps.quantized(f"{ENCODER}.neck.0", x))
    return steps.layer_norm_2d(f"{ENCODER}.neck.3", steps.quantized(f"{ENCODER}.neck.2", x))


def encode(steps: Steps, image: np.ndarray) -> np.ndarray:
    """Preprocessed image [B, 3, S, S] -> image embedding [B, C, h, w] (TinyViT encoders only)."""
    cfg = steps.structure.encoder
    x = np.asarray(image, np.float64)
    # Host: the patch embedding is part of the float stem.
    x = steps.conv(f"{ENCODER}.patch_embed.seq.2", G.gelu(steps.conv(f"{ENCODER}.patch_embed.seq.0", x)))
    for i, kind in enumerate(cfg.stage_types):
        if kind == "float_conv":
            x = _float_stage(steps, i, x, cfg.depths[i], cfg.downsample[i])
        else:
            x = _attention_stage(steps, i, x, cfg)
    return _neck(steps, x, cfg.input_resolutions[-1])
