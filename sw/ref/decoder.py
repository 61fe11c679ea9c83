"""SAM prompt encoder and mask decoder from a bundle, for box prompts and one mask per box.

Host: the prompt encoder (random-Fourier position encoding of the box corners and of the embedding
grid), the output tokens, every residual add and LayerNorm, the upscaling convs, the hypernetwork MLP
and the IoU head; they stay float in the quantized model. Accelerator: every q/k/v/out projection and
MLP linear of the two-way transformer, and both integer stages of its attentions.
"""

from __future__ import annotations

import numpy as np

from . import graph_host as G
from .steps import Steps

PROMPT = "prompt_encoder"
DECODER = "mask_decoder"
TRANSFORMER = f"{DECODER}.transformer"


def _fourier(steps: Steps, coords: np.ndarray) -> np.ndarray:
    """PositionEmbeddingRandom._pe_encoding of coordinates normalized to [0, 1]."""
    projected = 2 * np.pi * ((2 * coords - 1) @ steps.param(f"{PROMPT}.pe_layer.positional_encoding_gaussian_matrix"))
    return np.concatenate([np.sin(projected), np.cos(projected)], axis=-1)


def dense_position_encoding(steps: Steps) -> np.ndarray:
    """get_dense_pe(): [1, C, h, w] encoding of the embedding grid's pixel centres."""
    h, w = steps.structure.prompt_encoder.image_embedding_size
    y, x = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
    return _fourier(steps, np.stack([x, y], axis=-1)).transpose(2, 0, 1)[None]


def box_embeddings(steps: Steps, boxes: np.ndarray) -> np.ndarray:
    """Sparse prompt embeddings [N, 2, C] of xyxy boxes in encoder-input pixels."""
    in_h, in_w = steps.structure.prompt_encoder.input_image_size
    corners = (np.asarray(boxes, np.float64).reshape(-1, 2, 2) + 0.5) / np.array([in_w, in_h])
    emb = _fourier(steps, corners)
    emb[:, 0] += steps.param(f"{PROMPT}.point_embeddings.2.weight")[0]
    emb[:, 1] += steps.param(f"{PROMPT}.point_embeddings.3.weight")[0]
    return emb


def _attention(steps: Steps, name: str, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Two-way transformer attention: float q/k/v inputs [B, N, C] -> float output [B, Nq, C]."""
    heads = steps.bundle.attention(name).heads

    def split(x):  # quantized before the head split, as QuantDecoderAttention does
        b, n, c = x.shape
        return x.reshape(b, n, heads, c // heads).transpose(0, 2, 1, 3)

    codes = [split(steps.projection_codes(f"{name}.{p}_proj", x)) for p, x in zip("qkv", (q, k, v))]
    out = steps.attention(name, *codes)
    b, _, n, d = out.shape
    return steps.from_codes(f"{name}.out_proj", out.transpose(0, 2, 1, 3).reshape(b, n, heads * d))


def _two_way_block(steps: Steps, name: str, queries, keys, query_pe, key_pe, skip_first_pe: bool):
    if skip_first_pe:
        queries = _attention(steps, f"{name}.self_attn", queries, queries, queries)
    else:
        q = queries + query_pe
        queries = queries + _attention(steps, f"{name}.self_attn", q, q, queries)
    queries = steps.layer_norm(f"{name}.norm1", queries)

    q, k = queries + query_pe, keys + key_pe
    queries = steps.layer_norm(f"{name}.norm2", queries + _attention(steps, f"{name}.cross_attn_token_to_image", q, k, keys))

    hidden = steps.quantized_into(f"{name}.mlp.lin1", G.relu, queries, f"{name}.mlp.lin2")
    queries = steps.layer_norm(f"{name}.norm3", queries + steps.from_codes(f"{name}.mlp.lin2", hidden))

    q, k = queries + query_pe, keys + key_pe
    keys = steps.layer_norm(f"{name}.norm4", keys + _attention(steps, f"{name}.cross_attn_image_to_token", k, q, queries))
    return queries, keys


def _transformer(steps: Steps, src: np.ndarray, pos: np.ndarray, tokens: np.ndarray):
    cfg = steps.structure.mask_decoder
    b, c = src.shape[:2]
    keys = src.reshape(b, c, -1).transpose(0, 2, 1)
    key_pe = pos.reshape(pos.shape[0], c, -1).transpose(0, 2, 1)
    queries = tokens
    for i in range(cfg.depth):
        queries, keys = _two_way_block(steps, f"{TRANSFORMER}.layers.{i}", queries, keys, tokens, key_pe,
                                       cfg.skip_first_layer_pe[i])
    q, k = queries + tokens, keys + key_pe
    queries = queries + _attention(steps, f"{TRANSFORMER}.final_attn_token_to_image", q, k, keys)
    return steps.layer_norm(f"{TRANSFORMER}.norm_final_attn", queries), keys


def decode(steps: Steps, embedding: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MaskDecoder(multimask_output=False) for one image embedding [1, C, h, w] and boxes [N, 4]:
    mask logits [N, 1, 4h, 4w] and predicted IoU [N]."""
    cfg = steps.structure.mask_decoder
    n = len(boxes)
    output_tokens = np.concatenate([steps.param(f"{DECODER}.iou_token.weight"), steps.param(f"{DECODER}.mask_tokens.weight")])
    tokens = np.concatenate([np.broadcast_to(output_tokens, (n, *output_tokens.shape)), box_embeddings(steps, boxes)], axis=1)
    # No mask prompt: every box gets the learned no-mask embedding as its dense prompt.
    src = np.repeat(embedding, n, axis=0) + steps.param(f"{PROMPT}.no_mask_embed.weight").reshape(1, -1, 1, 1)
    hs, keys = _transformer(steps, src, dense_position_encoding(steps), tokens)

    b, c, h, w = src.shape
    up = keys.transpose(0, 2, 1).reshape(b, c, h, w)
    up = G.gelu(steps.layer_norm_2d(f"{DECODER}.output_upscaling.1", steps.conv_transpose(f"{DECODER}.output_upscaling.0", up)))
    up = G.gelu(steps.conv_transpose(f"{DECODER}.output_upscaling.3", up))
    # multimask_output=False keeps mask token 0 only, so only its hypernetwork MLP is evaluated.
    hyper = steps.mlp(f"{DECODER}.output_hypernetworks_mlps.0", hs[:, 1], cfg.hypernetwork_depth)
    bu, cu, hu, wu = up.shape
    masks = (hyper[:, None, :] @ up.reshape(bu, cu, hu * wu)).reshape(bu, 1, hu, wu)
    iou = steps.mlp(f"{DECODER}.iou_prediction_head", hs[:, 0], cfg.iou_head_depth)[:, 0]
    return masks, iou
