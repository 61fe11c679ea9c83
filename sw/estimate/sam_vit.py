"""The official SAM ViT-B image encoder as a workload of shapes, without a bundle (numpy only).

``sw/ref`` runs TinyViT encoders whole, not SAM's ViT, so the invocations of ViT-B cannot be recorded
from an exported bundle. They follow from the architecture (``segment_anything.modeling.ImageEncoderViT``
as ``sw.models.sam_vit`` builds it: 1024 x 1024 input, 16 x 16 patches -> 64 x 64 tokens of 768,
12 blocks of 12 heads x 64, windows of 14 x 14 (the token grid padded to 70 x 70: 25 windows) in every
block but the global ones, MLP ratio 4, a neck of a 1x1 conv 768 -> 256 and a 3x3 conv 256 -> 256).
Every layer the toolkit quantizes in LiteMedSAM is quantized here in the same role, with the code
formats of a template bundle (``qkv`` and ``lin1`` inputs as that bundle's ``attn.qkv`` / ``mlp.fc1``,
``proj`` as ``attn.proj``, ``lin2`` as ``mlp.fc2``, the attention as ``attn``'s q/k/v and softmax codes, the
neck as ``neck.0`` / ``neck.2``) and random weight codes (group multipliers 1, no bias: the template's
constants were fitted to its own, shorter reductions): shapes and formats decide the tiling and the
cycles, weight and constant values do not. The patch embedding and the host steps stay float, as in LiteMedSAM.
The decoder is SAM's mask decoder for a 64 x 64 x 256 image embedding, the same as LiteMedSAM's, so its
invocations are the template bundle's own.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hw.compiler.invocation import InvocationSpec, OutputLookup
from hw.compiler.model import invocation_kind, output_reader
from sw.models.sam_vit_config import VARIANTS
from sw.bundle import AttentionLayer, Bundle, CagCodes, CodesOutput, ConvLayer, LinearLayer, Weights

from .workload import Call, Workload


SAM_VIT_B = "sam_vit_b"   # the variant estimated (sw/models/sam_vit_config.py has its settings)
TEMPLATE_BLOCK = "image_encoder.layers.2.blocks.0"   # TinyViT block whose formats the ViT blocks take


def _resize(values: np.ndarray, n: int) -> np.ndarray:
    return np.resize(np.asarray(values), n).astype(np.asarray(values).dtype)


def _output(output, n: int):
    changes = {"multiplier": _resize(output.multiplier, n), "shift": _resize(output.shift, n)}
    if isinstance(output, CodesOutput):
        changes["zero_point"] = _resize(output.zero_point, n)
    return dataclasses.replace(output, **changes)


def _weights(template: Weights, shape: tuple, rng) -> Weights:
    o = shape[0]
    codes = rng.integers(0, 1 << template.weight_bits, shape).astype(np.uint8)
    return dataclasses.replace(template, codes=codes, zero_point=_resize(template.zero_point, o),
                               scale=_resize(template.scale, o))


def _input(template, channels: int):
    if isinstance(template, CagCodes):
        labels = _resize(template.channel_group, channels)
        return dataclasses.replace(template, channel_group=labels, permutation=np.argsort(labels, kind="stable"))
    return template


def _small(template) -> dict:
    """Group multipliers of 1 and no bias: the template's constants were fitted to its own reduction
    length and can overflow the lanes' accumulator over ViT-B's; constants do not change the timing."""
    o = template.out_channels
    return {"group_multiplier": np.ones_like(template.group_multiplier), "bias_acc": np.zeros(o, np.int64)}


def resized_linear(template: LinearLayer, name: str, c: int, o: int, rng) -> LinearLayer:
    layer = dataclasses.replace(template, name=name, weights=_weights(template.weights, (o, c), rng),
                                bias=np.zeros(o, np.float32), bias_acc=np.zeros(o, np.int64),
                                input=_input(template.input, c), output=_output(template.output, o))
    return dataclasses.replace(layer, **_small(layer))


def resized_conv(template: ConvLayer, name: str, c: int, o: int, kernel: int, padding: int, rng) -> ConvLayer:
    layer = dataclasses.replace(template, name=name, weights=_weights(template.weights, (o, c, kernel, kernel), rng),
                                bias=np.zeros(o, np.float32), bias_acc=np.zeros(o, np.int64),
                                output=_output(template.output, o), stride=1, padding=padding, groups=1)
    return dataclasses.replace(layer, **_small(layer))


def resized_attention(template: AttentionLayer, name: str, heads: int, dim: int, keys: int,
                      rel_pos: int) -> AttentionLayer:
    table = np.zeros((2 * rel_pos - 1, dim), np.float32)
    return dataclasses.replace(template, name=name, heads=heads, key_dim=dim, value_dim=dim, max_keys=keys,
                               logit_scale=dim ** -0.5, attention_bias=None, rel_pos_h=table, rel_pos_w=table)


def vit_encoder_calls(template: Bundle, variant: str = SAM_VIT_B, seed: int = 0) -> list[Call]:
    """The encoder's invocations: one windowed and one global block (each with its repeat count), the neck."""
    shape = VARIANTS[variant]
    rng = np.random.default_rng(seed)
    t = {role: template.layers[f"{TEMPLATE_BLOCK}.{role}"] for role in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")}
    attn = template.layers[f"{TEMPLATE_BLOCK}.attn"]
    d, h, hd = shape.embed_dim, shape.num_heads, shape.embed_dim // shape.num_heads
    hidden = d * shape.mlp_ratio
    calls = []

    def add(layer, op, shapes, count, elementwise=None, into=None):
        spec = InvocationSpec.of(layer, op, shapes, OutputLookup.of(layer, elementwise, into) if into else None)
        calls.append(Call(spec, layer, count, invocation_kind(layer, op),
                          output_reader(layer, op, {layer.name: elementwise} if elementwise else {})))

    windowed = [i for i in range(shape.depth) if i not in shape.global_attn_indexes]
    for blocks in (windowed, list(shape.global_attn_indexes)):
        if not blocks:
            continue
        i, count = blocks[0], len(blocks)
        is_global = i in shape.global_attn_indexes
        items, side = (1, shape.grid) if is_global else (shape.windows, shape.window_size)
        tokens = side * side
        prefix = f"image_encoder.blocks.{i}"
        qkv = resized_linear(t["attn.qkv"], f"{prefix}.attn.qkv", d, 3 * d, rng)
        proj = resized_linear(t["attn.proj"], f"{prefix}.attn.proj", d, d, rng)
        lin1 = resized_linear(t["mlp.fc1"], f"{prefix}.mlp.lin1", d, hidden, rng)
        lin2 = resized_linear(t["mlp.fc2"], f"{prefix}.mlp.lin2", hidden, d, rng)
        att = resized_attention(attn, f"{prefix}.attn", h, hd, tokens, side)
        add(qkv, None, {"input": (items, side, side, d)}, count)
        add(att, "scores", {"q": (items, h, tokens, hd), "k": (items, h, tokens, hd)}, count)
        add(att, "values", {"probs": (items, h, tokens, tokens), "v": (items, h, tokens, hd)}, count)
        add(proj, None, {"input": (items, side, side, d)}, count)
        add(lin1, None, {"input": (1, shape.grid, shape.grid, d)}, count, "gelu", lin2)   # the MLP's GELU
        add(lin2, None, {"input": (1, shape.grid, shape.grid, hidden)}, count)
    neck0 = resized_conv(template.layers["image_encoder.neck.0"], "image_encoder.neck.0", d, shape.prompt_embed_dim, 1, 0, rng)
    neck2 = resized_conv(template.layers["image_encoder.neck.2"], "image_encoder.neck.2", shape.prompt_embed_dim,
                         shape.prompt_embed_dim, 3, 1, rng)
    add(neck0, None, {"input": (1, d, shape.grid, shape.grid)}, 1)
    add(neck2, None, {"input": (1, shape.prompt_embed_dim, shape.grid, shape.grid)}, 1)
    return calls


def source_digest() -> str:
    """SHA-256 of this module: the ViT workloads' cache key (analyze.py) includes how they are built."""
    import hashlib
    from pathlib import Path
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def vit_workload(template: Bundle, template_workload: Workload, variant: str = SAM_VIT_B) -> Workload:
    h = template.header
    shape = VARIANTS[variant]
    calls = vit_encoder_calls(template, variant) + [c for c in template_workload.calls if c.part == "decoder"]
    identity = {"shapes": repr(shape), "formats_from": template_workload.identity, "template_block": TEMPLATE_BLOCK,
                "code": source_digest()}
    notes = [f"shapes only: {variant} encoder invocations built from the architecture with random weight codes "
             f"and the code formats of the {h.recipe} W{h.weight_bits}A{h.act_bits} bundle's {TEMPLATE_BLOCK}; "
             "decoder invocations are that bundle's (the same SAM mask decoder)"]
    return Workload(f"{variant} (shapes) {h.recipe} W{h.weight_bits}A{h.act_bits}", variant, calls, identity,
                    notes)
