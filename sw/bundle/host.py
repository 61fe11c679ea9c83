"""The float half of a bundle: the ``host`` layer with the model's structure and the float parameters
of every step that stays off the accelerator (stem, LayerNorms, prompt encoder, decoder heads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .layers import Layer
from .record import ContractError, Record, require, tensor_map, value

HOST_LAYER = "host"
STAGE_TYPES = ("float_conv", "attention")


class EncoderStructure(Record):
    TAG_KEY: ClassVar[str] = "type"


@dataclass(frozen=True, eq=False)
class TinyVitStructure(EncoderStructure):
    """TinyViT stages, one entry per stage (LiteMedSAM's encoder; the only one run whole)."""

    TAG: ClassVar[str] = "tiny_vit"
    img_size: int = value("input side in pixels")
    mlp_ratio: float = value("MLP hidden width / embedding width")
    embed_dims: tuple[int, ...] = value("embedding width per stage")
    depths: tuple[int, ...] = value("blocks per stage")
    stage_types: tuple[str, ...] = value("float_conv (MBConv stem, host) or attention (quantized)")
    num_heads: tuple[int, ...] = value("attention heads per stage (0: none)")
    window_sizes: tuple[int, ...] = value("attention window side per stage (0: none)")
    input_resolutions: tuple[tuple[int, int], ...] = value("token grid (h, w) entering each stage")
    downsample: tuple[bool, ...] = value("whether the stage ends in a patch merging")

    @property
    def stages(self) -> int:
        return len(self.depths)

    def check(self) -> None:
        for name in ("embed_dims", "stage_types", "num_heads", "window_sizes", "input_resolutions", "downsample"):
            require(len(getattr(self, name)) == self.stages, name, f"needs one entry per stage ({self.stages})")
        for i, kind in enumerate(self.stage_types):
            require(kind in STAGE_TYPES, f"stage_types[{i}]", f"must be one of {STAGE_TYPES}, got {kind!r}")


@dataclass(frozen=True, eq=False)
class RecordedEncoder(EncoderStructure):
    """An encoder the integer reference does not run whole (SAM ViT); its class is recorded."""

    TAG: ClassVar[str] = "recorded"
    class_name: str = value("the encoder's Python class")


@dataclass(frozen=True, eq=False)
class PromptEncoderStructure(Record):
    embed_dim: int = value("prompt and image embedding width")
    image_embedding_size: tuple[int, int] = value("(h, w) of the image embedding")
    input_image_size: tuple[int, int] = value("(h, w) of the encoder input in pixels")


@dataclass(frozen=True, eq=False)
class MaskDecoderStructure(Record):
    depth: int = value("two-way transformer blocks")
    num_heads: int = value("attention heads")
    embedding_dim: int = value("token width")
    num_mask_tokens: int = value("mask tokens (one mask per box is used)")
    skip_first_layer_pe: tuple[bool, ...] = value("per block: the first self-attention skips the position encoding")
    iou_head_depth: int = value("layers of the IoU prediction MLP")
    hypernetwork_depth: int = value("layers of each hypernetwork MLP")

    def check(self) -> None:
        require(len(self.skip_first_layer_pe) == self.depth, "skip_first_layer_pe", f"needs {self.depth} entries")


@dataclass(frozen=True, eq=False)
class FloatConv(Record):
    """Geometry of a float (host) conv or transposed conv."""

    transpose: bool = value("a transposed conv (decoder upscaling)")
    stride: int = value("stride along both axes")
    padding: int = value("padding on every side")
    groups: int = value("channel groups")


@dataclass(frozen=True, eq=False)
class HostStructure(Record):
    model: str = value("model name")
    image_size: int = value("encoder input side in pixels")
    encoder: TinyVitStructure | RecordedEncoder = value("encoder stages")
    prompt_encoder: PromptEncoderStructure = value("prompt encoder sizes")
    mask_decoder: MaskDecoderStructure = value("mask decoder sizes")
    convs: dict[str, FloatConv] = value("every float conv by module path")
    norm_eps: dict[str, float] = value("every LayerNorm's epsilon by module path")


@dataclass(frozen=True, eq=False)
class HostLayer(Layer):
    TAG: ClassVar[str] = "host"
    name: str = value(f"always '{HOST_LAYER}'")
    structure: HostStructure = value("the model's structure")
    parameters: dict[str, np.ndarray] = tensor_map("float32", "state_dict entries only the host reads, by key")

    def check(self) -> None:
        require(self.name == HOST_LAYER, "name", f"the host layer is named '{HOST_LAYER}', got '{self.name}'")
        for key, array in self.parameters.items():
            if str(array.dtype) != "float32":
                raise ContractError(f"parameters.{key}", f"must be float32, got {array.dtype}")
