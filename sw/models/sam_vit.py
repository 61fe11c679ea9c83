"""Official SAM ViT-B/L/H (``segment-anything`` package) from a user-supplied checkpoint.

Preprocessing follows SAM: bilinear resize of the long side to the encoder input size, ImageNet
mean/std normalization on the 0..255 scale, zero padding bottom/right.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from PIL import Image

from .base import SegmentModel
from .checkpoints import load_into, read_state_dict
from .sam_vit_config import VARIANTS, SamVitConfig
from ..errors import SamhwError

PIXEL_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
PIXEL_STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


def _resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def build_sam_vit(config: SamVitConfig, name: str, checkpoint: str | None = None, seed: int = 0) -> SegmentModel:
    """Build the SAM architecture for ``config``; load ``checkpoint`` if given, else seeded random init."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer

    state = read_state_dict(checkpoint) if checkpoint is not None else None
    torch.manual_seed(seed)
    embed_size = config.img_size // config.patch_size
    image_encoder = ImageEncoderViT(
        depth=config.depth,
        embed_dim=config.embed_dim,
        img_size=config.img_size,
        mlp_ratio=config.mlp_ratio,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=config.num_heads,
        patch_size=config.patch_size,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=config.global_attn_indexes,
        window_size=config.window_size,
        out_chans=config.prompt_embed_dim,
    )
    prompt_encoder = PromptEncoder(
        embed_dim=config.prompt_embed_dim,
        image_embedding_size=(embed_size, embed_size),
        input_image_size=(config.img_size, config.img_size),
        mask_in_chans=16,
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(
            depth=config.decoder_depth,
            embedding_dim=config.prompt_embed_dim,
            mlp_dim=config.decoder_mlp_dim,
            num_heads=config.decoder_heads,
        ),
        transformer_dim=config.prompt_embed_dim,
        iou_head_depth=3,
        iou_head_hidden_dim=config.iou_head_hidden_dim,
    )
    model = SegmentModel(
        name=name,
        image_encoder=image_encoder,
        prompt_encoder=prompt_encoder,
        mask_decoder=mask_decoder,
        input_size=config.img_size,
        normalize=lambda x: (x - PIXEL_MEAN) / PIXEL_STD,
        resize=_resize_bilinear,
    )
    if state is not None:
        # The official checkpoints hold the whole Sam module (image_encoder.*, prompt_encoder.*,
        # mask_decoder.*) plus pixel_mean/pixel_std buffers, which live in our preprocessing.
        state = {k: v for k, v in state.items() if k not in ("pixel_mean", "pixel_std")}
        load_into(model, state, checkpoint)
    return model.eval()


def load_sam_vit(name: str, checkpoint: str | None) -> SegmentModel:
    if checkpoint is None:
        raise SamhwError(f"{name}: needs --checkpoint PATH (official SAM weights are not bundled)")
    return build_sam_vit(VARIANTS[name], name, checkpoint)
