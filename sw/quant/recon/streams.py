"""The network cut into segments that reconstruction walks in order.

A segment is a module (an encoder block, a patch merging, the neck, a decoder two-way block, the final
token-to-image attention) plus how to run it on the *state* flowing between segments. The same
segment runs on the float model and on the quantized model (they share module paths), which is how
reconstruction keeps a float stream and a quantized stream side by side one segment at a time instead
of re-running the whole network for every unit.

States are tuples of tensors, one tuple per calibration image:
- encoder: (tokens,) after the float stem, then the neck's image embedding;
- decoder: (queries, keys, query_pe, key_pe) of the two-way transformer, one row per prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ...models.base import SegmentModel

State = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Segment:
    path: str  # module whose units are reconstructed, relative to the SegmentModel
    run: Callable[[SegmentModel, State], State]


def _call(path: str) -> Callable[[SegmentModel, State], State]:
    return lambda model, state: (model.get_submodule(path)(state[0]),)


def _tokens_to_grid(x: torch.Tensor) -> torch.Tensor:
    b, n, c = x.shape
    side = math.isqrt(n)
    return x.view(b, side, side, c).permute(0, 3, 1, 2)


def is_tinyvit(encoder) -> bool:
    return hasattr(encoder, "layers") and type(encoder.layers[0]).__name__ == "ConvLayer"


def encoder_stem(model: SegmentModel, x: torch.Tensor) -> State:
    """Everything before the first quantized segment; it stays float (see prepare.FLOAT_STEM_CLASSES)."""
    enc = model.image_encoder
    if is_tinyvit(enc):
        return (enc.layers[0](enc.patch_embed(x)),)
    h = enc.patch_embed(x)
    if enc.pos_embed is not None:
        h = h + enc.pos_embed
    return (h,)


def encoder_segments(model: SegmentModel) -> list[Segment]:
    enc = model.image_encoder
    segments = []
    if is_tinyvit(enc):
        for i in range(1, len(enc.layers)):
            layer = enc.layers[i]
            segments += [Segment(f"image_encoder.layers.{i}.blocks.{j}", _call(f"image_encoder.layers.{i}.blocks.{j}"))
                         for j in range(len(layer.blocks))]
            if layer.downsample is not None:
                segments.append(Segment(f"image_encoder.layers.{i}.downsample", _call(f"image_encoder.layers.{i}.downsample")))
        segments.append(Segment("image_encoder.neck",
                                lambda m, s: (m.image_encoder.neck(_tokens_to_grid(s[0])),)))
    else:
        segments += [Segment(f"image_encoder.blocks.{j}", _call(f"image_encoder.blocks.{j}"))
                     for j in range(len(enc.blocks))]
        segments.append(Segment("image_encoder.neck",
                                lambda m, s: (m.image_encoder.neck(s[0].permute(0, 3, 1, 2)),)))
    return segments


def _two_way_block(path: str) -> Callable[[SegmentModel, State], State]:
    def run(model: SegmentModel, state: State) -> State:
        queries, keys, query_pe, key_pe = state
        queries, keys = model.get_submodule(path)(queries=queries, keys=keys, query_pe=query_pe, key_pe=key_pe)
        return queries, keys, query_pe, key_pe
    return run


def _final_attention(model: SegmentModel, state: State) -> State:
    queries, keys, query_pe, key_pe = state
    t = model.mask_decoder.transformer
    queries = t.norm_final_attn(queries + t.final_attn_token_to_image(q=queries + query_pe, k=keys + key_pe, v=keys))
    return queries, keys, query_pe, key_pe


def decoder_segments(model: SegmentModel) -> list[Segment]:
    t = model.mask_decoder.transformer
    segments = [Segment(f"mask_decoder.transformer.layers.{i}", _two_way_block(f"mask_decoder.transformer.layers.{i}"))
                for i in range(len(t.layers))]
    segments.append(Segment("mask_decoder.transformer.final_attn_token_to_image", _final_attention))
    return segments


class _Captured(Exception):
    pass


def decoder_state(model: SegmentModel, embedding: torch.Tensor, boxes: torch.Tensor) -> State:
    """The two-way transformer's input state for ``boxes`` on ``embedding``; the rest of the decoder
    is skipped. Differentiable in ``embedding`` (PAR's layer skipping trains through it)."""
    captured = {}

    def grab(_module, args):
        image_embedding, image_pe, point_embedding = args
        captured["state"] = (point_embedding, image_embedding.flatten(2).permute(0, 2, 1),
                             point_embedding, image_pe.flatten(2).permute(0, 2, 1))
        raise _Captured

    handle = model.mask_decoder.transformer.register_forward_pre_hook(grab)
    try:
        model.decode(embedding, boxes)
    except _Captured:
        pass
    finally:
        handle.remove()
    # The permuted views themselves, as SAM hands them to the transformer: a contiguous copy goes
    # through other GEMM kernels, which on some CPUs round differently from the decoder's own run.
    return tuple(captured["state"])
