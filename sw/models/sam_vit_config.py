"""SAM ViT-B/L/H architecture settings, torch-free: the model builder (``sam_vit.py``) and the speed
estimate of ViT-B's shapes (``sw/estimate/sam_vit.py``, numpy only) read the same record."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamVitConfig:
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    img_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    mlp_ratio: int = 4
    prompt_embed_dim: int = 256   # also the neck's width: the image embedding's channels
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_hidden_dim: int = 256

    @property
    def grid(self) -> int:
        """Tokens per side of the image embedding."""
        return self.img_size // self.patch_size

    @property
    def windows(self) -> int:
        """Windows of a windowed block: the token grid padded to a multiple of the window."""
        padded = -(-self.grid // self.window_size) * self.window_size
        return (padded // self.window_size) ** 2


VARIANTS = {
    "sam_vit_b": SamVitConfig(768, 12, 12, (2, 5, 8, 11)),
    "sam_vit_l": SamVitConfig(1024, 24, 16, (5, 11, 17, 23)),
    "sam_vit_h": SamVitConfig(1280, 32, 16, (7, 15, 23, 31)),
}
