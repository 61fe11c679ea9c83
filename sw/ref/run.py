"""Whole-model integer reference: a preprocessed image and box prompts in, mask logits out, numpy only.

    embedding = encode_image(bundle, image)              # [1, 3, S, S] float -> [1, C, h, w]
    logits, iou = decode_masks(bundle, embedding, boxes)  # boxes [N, 4] xyxy in encoder-input pixels
    y = run_encoder_block(bundle, "image_encoder.layers.2.blocks.0", x)   # one TinyViT block, x [B, L, C]

The integer layers run exactly as the accelerator computes them; the host steps between them run in
float64 (``sw/ref/steps.py`` marks each crossing). ``encode_image`` and ``decode_masks`` take an
``IntegerLayers`` (``layers=``) that runs the integer layers instead: an accelerator, or a recorder of
the invocations (``hw/compiler/model.py``). The image is what ``SegmentModel.preprocess``
produces and the logits are what ``SegmentModel.decode`` returns, so the model's own postprocessing
applies unchanged. Only TinyViT encoders (LiteMedSAM) can be run whole; the decoder is any SAM's.
"""

from __future__ import annotations

import re

import numpy as np

from ..bundle import Bundle, BundleError, TinyVitStructure
from . import decoder, encoder
from .steps import IntegerLayers, Steps

_BLOCK = re.compile(rf"{encoder.ENCODER}\.layers\.(\d+)\.blocks\.(\d+)")


def _tiny_vit(bundle: Bundle, layers: IntegerLayers | None = None) -> tuple[Steps, TinyVitStructure]:
    steps = Steps(bundle, layers)
    cfg = steps.structure.encoder
    if not isinstance(cfg, TinyVitStructure):
        raise BundleError(f"{bundle.where}: encoder '{cfg.class_name}' cannot be run whole (TinyViT only)")
    return steps, cfg


def encode_image(bundle: Bundle, image: np.ndarray, layers: IntegerLayers | None = None) -> np.ndarray:
    """Image embedding [B, C, h, w] of a preprocessed image [B, 3, S, S]; ``layers`` runs the integer
    layers (default: this reference, ``sw/ref/steps.py``)."""
    steps, _ = _tiny_vit(bundle, layers)
    size = steps.structure.image_size
    image = np.asarray(image)
    if image.ndim != 4 or image.shape[1:] != (3, size, size):
        raise BundleError(f"image of shape {list(image.shape)} does not match the bundle's input [B, 3, {size}, {size}]")
    return encoder.encode(steps, image)


def run_encoder_block(bundle: Bundle, block_name: str, x: np.ndarray) -> np.ndarray:
    """One TinyViT block (e.g. ``image_encoder.layers.1.blocks.0``) on its input tokens [B, H*W, C]."""
    steps, cfg = _tiny_vit(bundle)
    match = _BLOCK.fullmatch(block_name)
    stage = int(match.group(1)) if match else -1
    if not match or stage >= cfg.stages or cfg.stage_types[stage] != "attention" \
            or int(match.group(2)) >= cfg.depths[stage]:
        raise BundleError(f"'{block_name}' is not a quantized TinyViT block of this bundle")
    h, w = cfg.input_resolutions[stage]
    width = cfg.embed_dims[stage]
    x = np.asarray(x, np.float64)
    if x.ndim != 3 or x.shape[1:] != (h * w, width):
        raise BundleError(f"block input of shape {list(x.shape)} does not match [B, {h * w}, {width}]")
    return encoder.block(steps, block_name, x, (h, w), cfg.window_sizes[stage])


def decode_masks(bundle: Bundle, image_embedding: np.ndarray, boxes: np.ndarray,
                 layers: IntegerLayers | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Low-res mask logits [N, 1, H, W] and predicted IoU [N] for boxes [N, 4] (xyxy, encoder-input
    pixels), with one mask per box as ``SegmentModel.decode`` (multimask_output=False)."""
    steps = Steps(bundle, layers)
    pe = steps.structure.prompt_encoder
    embedding = np.asarray(image_embedding, np.float64)
    want = (1, pe.embed_dim, *pe.image_embedding_size)
    if embedding.shape != want:
        raise BundleError(f"image embedding of shape {list(embedding.shape)} does not match {list(want)}")
    boxes = np.asarray(boxes, np.float64)
    if boxes.size % 4 or (boxes.ndim == 2 and boxes.shape[1] != 4) or boxes.ndim > 2:
        raise BundleError(f"boxes of shape {list(boxes.shape)} are not [N, 4]")
    boxes = boxes.reshape(-1, 4)
    if not len(boxes):
        upscale = int(np.prod([g.stride for name, g in steps.structure.convs.items()
                               if name.startswith(f"{decoder.DECODER}.output_upscaling.")]))
        return np.zeros((0, 1, *(upscale * np.array(pe.image_embedding_size)))), np.zeros(0)
    return decoder.decode(steps, embedding, boxes)
