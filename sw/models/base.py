"""The one interface the rest of the toolkit sees: image encoder, prompt encoder, mask decoder.

A :class:`SegmentModel` owns the three SAM parts plus the model-specific image preprocessing and mask
postprocessing, so quantization and evaluation code never needs to know which SAM variant it holds.
Only box prompts are used (the benchmark is box-prompted instance segmentation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class ImageMeta:
    """Geometry of one preprocessed image, needed to map boxes in and masks back out."""

    original_size: tuple[int, int]  # (H, W) of the user's image
    resized_size: tuple[int, int]  # (h, w) after resizing the long side to the model input size

    @property
    def scale(self) -> float:
        return self.resized_size[0] / self.original_size[0] if self.original_size[0] else 1.0


def resized_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Shape after scaling so the long side equals ``long_side`` (SAM's ResizeLongestSide rule)."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


class SegmentModel(nn.Module):
    """A SAM-family model with box prompts.

    Parameters
    ----------
    name:
        Registry name, e.g. ``"litemedsam"``.
    image_encoder, prompt_encoder, mask_decoder:
        The SAM parts. The mask decoder is called with ``multimask_output=False``.
    input_size:
        Side of the square encoder input (256 for LiteMedSAM, 1024 for SAM ViT).
    normalize:
        Maps a resized float32 image tensor ``[3, h, w]`` in 0..255 to the encoder's input range.
    resize:
        Resizes an HxWx3 uint8 array to ``(h, w)``; model specific because the reference
        pipelines use different interpolation.
    """

    def __init__(
        self,
        name: str,
        image_encoder: nn.Module,
        prompt_encoder: nn.Module,
        mask_decoder: nn.Module,
        input_size: int,
        normalize: Callable[[torch.Tensor], torch.Tensor],
        resize: Callable[[np.ndarray, tuple[int, int]], np.ndarray],
    ):
        super().__init__()
        self.name = name
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.input_size = input_size
        self._normalize = normalize
        self._resize = resize

    # -- preprocessing ------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> tuple[torch.Tensor, ImageMeta]:
        """HxWx3 uint8 RGB -> padded ``[1, 3, S, S]`` encoder input and its geometry."""
        height, width = image.shape[:2]
        h, w = resized_shape(height, width, self.input_size)
        resized = self._resize(image, (h, w))
        x = torch.from_numpy(np.array(resized, dtype=np.uint8, copy=True)).permute(2, 0, 1).float()
        x = self._normalize(x)
        # Pad after normalization (bottom/right), as SAM does, so padding is exactly zero.
        x = F.pad(x, (0, self.input_size - w, 0, self.input_size - h))
        return x.unsqueeze(0), ImageMeta((height, width), (h, w))

    def boxes_to_input(self, boxes_xyxy: np.ndarray, meta: ImageMeta) -> torch.Tensor:
        """Boxes in original pixels -> boxes in encoder-input pixels, shape ``[N, 4]``."""
        boxes = torch.as_tensor(np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4))
        sy = meta.resized_size[0] / meta.original_size[0]
        sx = meta.resized_size[1] / meta.original_size[1]
        return boxes * torch.tensor([sx, sy, sx, sy])

    # -- the three parts ----------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(x)

    def decode(self, embedding: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes ``[N, 4]`` in input pixels -> low-res mask logits ``[N, 1, h, w]`` and IoU ``[N]``."""
        sparse, dense = self.prompt_encoder(points=None, boxes=boxes.reshape(-1, 1, 4), masks=None)
        logits, iou = self.mask_decoder(
            image_embeddings=embedding,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        return logits, iou[:, 0]

    def postprocess(self, logits: torch.Tensor, meta: ImageMeta) -> torch.Tensor:
        """Low-res logits -> mask logits at the original image size, ``[N, H, W]``."""
        x = F.interpolate(logits, (self.input_size, self.input_size), mode="bilinear", align_corners=False)
        x = x[..., : meta.resized_size[0], : meta.resized_size[1]]
        x = F.interpolate(x, meta.original_size, mode="bilinear", align_corners=False)
        return x[:, 0]

    # -- convenience --------------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, image: np.ndarray, boxes_xyxy: np.ndarray, prompt_batch: int = 4):
        """Segment ``image`` for each box; returns bool masks ``[N, H, W]`` and predicted IoU ``[N]``.

        Prompts go through the decoder a few at a time: the decoder's per-prompt copies of the image
        embedding make large batches memory-bound and slower per prompt on a CPU.
        """
        x, meta = self.preprocess(image)
        embedding = self.encode(x)
        boxes = self.boxes_to_input(boxes_xyxy, meta)
        masks, ious = [], []
        for start in range(0, len(boxes), prompt_batch):
            logits, iou = self.decode(embedding, boxes[start : start + prompt_batch])
            masks.append((self.postprocess(logits, meta) > 0).cpu().numpy())
            ious.append(iou.float().cpu().numpy())
        if not masks:
            return np.zeros((0, *meta.original_size), bool), np.zeros((0,), np.float32)
        return np.concatenate(masks), np.concatenate(ious)
