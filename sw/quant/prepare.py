"""Placing quantizers into a SAM-family model (methods.md §1.3).

Quantized: every linear/conv of the image encoder after its stem (input per tensor, weight per
output channel), q/k/v and the post-softmax map of every attention, the neck convs, and everything
inside the mask decoder's two-way transformer. Left in float: the stem, the prompt encoder, the
decoder's output upscaling, hypernetwork and IoU heads, all LayerNorms, activations, softmax itself,
residual adds and position terms.

The stem is what turns pixels into the first transformer stage's tokens. In SAM ViT that is the
patch embedding. In TinyViT it is the patch embedding plus stage 0, a ConvLayer of MBConv blocks
(with its patch merging) that runs at full input resolution before any attention: PTQ4SAM keeps the
first block in float, and TinyViT's first block is that conv stage. Its post-GELU hidden activations
span a wide range with most values near zero, so per-tensor 8-bit codes erase them: with stage 0
quantized too, even MinMax W8A8 LiteMedSAM loses a large part of its mIoU on coco_tiny val (a one-off
comparison when this placement was chosen; no generated table keeps it).
"""

from __future__ import annotations

import copy
from typing import Iterator

import torch.nn as nn

from ..models.base import SegmentModel
from .agq import AGQQuantizer
from .cag import CAGQuantizer
from .hluq import HLUQQuantizer
from .config import QuantConfig
from .observers import make_observer
from .pcc import CLIPPED_PROJECTIONS
from .qmodules import (QuantConv2d, QuantDecoderAttention, QuantLinear, QuantSamEncoderAttention,
                       QuantTinyViTAttention)
from .quantizer import UniformQuantizer

# Encoder stem modules that stay float, by class: SAM ViT's and TinyViT's PatchEmbed, and TinyViT's
# conv stage (ConvLayer, stage 0 only in every TinyViT configuration).
FLOAT_STEM_CLASSES = ("PatchEmbed", "ConvLayer")
# MLPs (TinyViT's Mlp, SAM's MLPBlock) and the names of their second linear, whose input follows the
# GELU / ReLU.
MLP_CLASSES = ("Mlp", "MLPBlock")
POST_ACTIVATION_LINEARS = ("fc2", "lin2")
# Linears whose inputs CAG groups by channel (methods.md §3.2): encoder qkv and the MLPs' first
# linear (post-LN), decoder q/k/v projections.
GROUPED_INPUT_LINEARS = ("qkv", "fc1", "lin1", "q_proj", "k_proj", "v_proj")


def _attention_kind(module: nn.Module) -> type | None:
    if type(module).__name__ != "Attention":
        return None
    if hasattr(module, "attention_biases"):
        return QuantTinyViTAttention
    if hasattr(module, "q_proj"):
        return QuantDecoderAttention
    if hasattr(module, "qkv") and hasattr(module, "use_rel_pos"):
        return QuantSamEncoderAttention
    return None


class _Factory:
    def __init__(self, cfg: QuantConfig):
        self.cfg = cfg

    def act(self) -> UniformQuantizer:
        c = self.cfg
        obs = make_observer(c.act_observer, c.act_bits, None, c.percentile, c.mse_norm, c.mse_grid)
        return UniformQuantizer(c.act_bits, obs, ch_axis=None)

    def softmax(self) -> nn.Module:
        c = self.cfg
        if c.softmax_quantizer == "agq":
            return AGQQuantizer(c.act_bits)
        if c.softmax_quantizer == "log2":
            return AGQQuantizer(c.act_bits, taus=(1,))
        return self.act()

    def post_activation(self, consumer: nn.Linear) -> nn.Module:
        """Input quantizer of an MLP's second linear (post-GELU / post-ReLU)."""
        if self.cfg.post_act_quantizer == "hluq":
            return HLUQQuantizer(self.cfg.act_bits, consumer)
        return self.act()

    def grouped_input(self) -> nn.Module:
        """Input quantizer of a projection that CAG groups (qkv, q/k/v_proj, the MLPs' first linear)."""
        c = self.cfg
        if c.cag_groups > 0:
            return CAGQuantizer(c.act_bits, c.cag_groups, c.cag_features, progressive=c.recon != "none")
        return self.act()

    def weight(self) -> UniformQuantizer:
        c = self.cfg
        obs = make_observer(c.weight_observer, c.weight_bits, 0, c.percentile, c.mse_norm, c.mse_grid)
        return UniformQuantizer(c.weight_bits, obs, ch_axis=0)


def _is_pcc_clipped(parent: nn.Module, name: str) -> bool:
    """A decoder attention's q/k projection, whose input range PCC searches per tensor."""
    return hasattr(parent, "q_proj") and name in CLIPPED_PROJECTIONS


def _swap(parent: nn.Module, factory: _Factory) -> None:
    for name, child in list(parent.named_children()):
        attention = _attention_kind(child)
        if type(child).__name__ in FLOAT_STEM_CLASSES:
            continue
        if attention is not None:
            _swap(child, factory)  # its projections become QuantLinear first
            setattr(parent, name, attention(child, factory))
        elif type(child) is nn.Linear:
            if type(parent).__name__ in MLP_CLASSES and name in POST_ACTIVATION_LINEARS:
                input_quantizer = factory.post_activation(child)
            elif name in GROUPED_INPUT_LINEARS and not (factory.cfg.pcc and _is_pcc_clipped(parent, name)):
                input_quantizer = factory.grouped_input()
            else:
                input_quantizer = factory.act()
            setattr(parent, name, QuantLinear(child, input_quantizer, factory.weight()))
        elif type(child) is nn.Conv2d:
            setattr(parent, name, QuantConv2d(child, factory.act(), factory.weight()))
        else:
            _swap(child, factory)


def quantize_model(model: SegmentModel, cfg: QuantConfig) -> SegmentModel:
    """A deep copy of ``model`` with (uncalibrated, disabled) quantizers at every quantized point."""
    qmodel = copy.deepcopy(model)
    factory = _Factory(cfg)
    _swap(qmodel.image_encoder, factory)
    _swap(qmodel.mask_decoder.transformer, factory)
    qmodel.quant_config = cfg
    return qmodel.eval()


QUANTIZER_TYPES = (UniformQuantizer, AGQQuantizer, HLUQQuantizer, CAGQuantizer)


def iter_quantizers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if isinstance(module, QUANTIZER_TYPES):
            yield name, module


def is_weight_quantizer(name: str) -> bool:
    return name.endswith("weight_quantizer")


def set_quant_state(model: nn.Module, *, act: bool | None = None, weight: bool | None = None,
                    observe_act: bool | None = None) -> None:
    """Switch fake quantization of activations / weights and activation observation on or off."""
    for name, q in iter_quantizers(model):
        if is_weight_quantizer(name):
            if weight is not None:
                q.enabled = weight
        else:
            if act is not None:
                q.enabled = act
            if observe_act is not None:
                q.observing = observe_act


def weight_owner(model: nn.Module, quantizer_name: str) -> nn.Module:
    return model.get_submodule(quantizer_name.rpartition(".")[0])
