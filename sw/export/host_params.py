"""The float half of a bundle: the parameters the host steps read, and the model's structure.

A whole-model integer run needs, besides the integer layers, everything that stays float: the encoder
stem, LayerNorms, the prompt encoder, the decoder's tokens, upscaling and heads. They go into one bundle
layer of kind ``host``: float32 copies of the model's state_dict entries keyed by their module path,
plus the structure (stage sizes, heads, windows; stride/padding/groups of each float conv; LayerNorm
epsilons) that the numpy graph in ``sw/ref`` needs to run them.

Left out: the weights and quantizer state of quantized layers (their integer layers carry them), the
attention position tables (already in their attention layers as ``attention_bias`` / ``rel_pos_*``),
the mask-prompt encoder (the toolkit prompts with boxes only), and integer bookkeeping buffers such as
BatchNorm's ``num_batches_tracked``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..models.base import SegmentModel
from ..quant.prepare import FLOAT_STEM_CLASSES, iter_quantizers
from ..quant.qmodules import QuantConv2d, QuantLinear
from ..bundle import (HOST_LAYER, FloatConv, HostLayer, HostStructure, MaskDecoderStructure, PromptEncoderStructure,
                      RecordedEncoder, TinyVitStructure)
from .layers import ATTENTION_TYPES

UNUSED_PREFIXES = ("prompt_encoder.mask_downscaling.",)
ATTENTION_TABLES = ("attention_biases", "rel_pos_h", "rel_pos_w")


def _excluded_prefixes(qmodel: nn.Module) -> tuple[str, ...]:
    owners = [n for n, m in qmodel.named_modules() if isinstance(m, (QuantLinear, QuantConv2d))]
    owners += [n for n, _ in iter_quantizers(qmodel)]
    owners += [f"{n}.{t}" for n, m in qmodel.named_modules() if isinstance(m, ATTENTION_TYPES)
               for t in ATTENTION_TABLES]
    return tuple(f"{o}." for o in owners) + UNUSED_PREFIXES


def host_tensors(qmodel: nn.Module) -> dict[str, np.ndarray]:
    """Float32 copies of the state_dict entries only the host reads, in sorted key order."""
    skip = _excluded_prefixes(qmodel)
    out = {}
    for key, value in sorted(qmodel.state_dict().items()):
        if not torch.is_floating_point(value) or f"{key}.".startswith(skip):
            continue
        out[key] = value.detach().cpu().numpy().astype(np.float32)
    return out


def _float_modules(qmodel: nn.Module):
    skip = _excluded_prefixes(qmodel)
    for name, module in qmodel.named_modules():
        if not f"{name}.".startswith(skip):
            yield name, module


def _conv_geometry(qmodel: nn.Module) -> dict[str, FloatConv]:
    convs = {}
    for name, m in _float_modules(qmodel):
        if type(m) in (nn.Conv2d, nn.ConvTranspose2d):
            if len(set(m.stride)) != 1 or len(set(m.padding)) != 1 or m.dilation != (1, 1):
                raise ValueError(f"float conv '{name}': only square stride/padding without dilation is supported")
            convs[name] = FloatConv(transpose=type(m) is nn.ConvTranspose2d, stride=m.stride[0], padding=m.padding[0],
                                    groups=m.groups)
    return convs


def _norm_eps(qmodel: nn.Module) -> dict[str, float]:
    return {name: float(m.eps) for name, m in _float_modules(qmodel)
            if isinstance(m, nn.LayerNorm) or type(m).__name__ == "LayerNorm2d"}


def _tiny_vit(enc: nn.Module) -> TinyVitStructure:
    stages = list(enc.layers)
    blocks = [s.blocks[0] for s in stages]
    return TinyVitStructure(
        img_size=int(enc.img_size), mlp_ratio=float(enc.mlp_ratio), embed_dims=tuple(int(s.dim) for s in stages),
        depths=tuple(len(s.blocks) for s in stages),
        stage_types=tuple("float_conv" if type(s).__name__ in FLOAT_STEM_CLASSES else "attention" for s in stages),
        num_heads=tuple(int(getattr(b, "num_heads", 0)) for b in blocks),
        window_sizes=tuple(int(getattr(b, "window_size", 0)) for b in blocks),
        input_resolutions=tuple((int(s.input_resolution[0]), int(s.input_resolution[1])) for s in stages),
        downsample=tuple(s.downsample is not None for s in stages))


def _encoder(enc: nn.Module) -> TinyVitStructure | RecordedEncoder:
    if type(enc).__name__ == "TinyViT":
        return _tiny_vit(enc)
    return RecordedEncoder(class_name=type(enc).__name__)


def _pair(values) -> tuple[int, int]:
    a, b = (int(v) for v in values)
    return a, b


def host_structure(qmodel: SegmentModel) -> HostStructure:
    pe, dec = qmodel.prompt_encoder, qmodel.mask_decoder
    tr = dec.transformer
    return HostStructure(
        model=qmodel.name, image_size=int(qmodel.input_size), encoder=_encoder(qmodel.image_encoder),
        prompt_encoder=PromptEncoderStructure(embed_dim=int(pe.embed_dim),
                                              image_embedding_size=_pair(pe.image_embedding_size),
                                              input_image_size=_pair(pe.input_image_size)),
        mask_decoder=MaskDecoderStructure(
            depth=len(tr.layers), num_heads=int(tr.num_heads), embedding_dim=int(tr.embedding_dim),
            num_mask_tokens=int(dec.num_mask_tokens), skip_first_layer_pe=tuple(bool(b.skip_first_layer_pe) for b in tr.layers),
            iou_head_depth=int(dec.iou_prediction_head.num_layers),
            hypernetwork_depth=int(dec.output_hypernetworks_mlps[0].num_layers)),
        convs=_conv_geometry(qmodel), norm_eps=_norm_eps(qmodel))


def host_layer(qmodel: SegmentModel) -> HostLayer:
    """The bundle's ``host`` layer (see the module docstring)."""
    return HostLayer(name=HOST_LAYER, structure=host_structure(qmodel), parameters=host_tensors(qmodel))
