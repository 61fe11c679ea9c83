"""Layer-by-layer cross-check of the integer reference against the fake-quant model on real images.

During a fake-quant forward, every quantized layer's input is encoded with the layer's own input
quantizer, run through the integer reference from the bundle, and the reference's output codes are
compared with the fake-quant output encoded the same way: the consuming quantizer's codes as the model
computed them, or the host code of the layer's fake-quant output evaluated in float64. Attentions are checked in their two integer stages: softmax codes from q/k codes, and the output
projection's input codes from the probability and value codes. Each check starts from the fake-quant
model's own codes, so differences never compound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.calibration import CalibItem
from ..models.base import SegmentModel
from ..quant.forward import run_items
from ..quant.qmodules import QuantConv2d, QuantDecoderAttention, QuantLinear, QuantSamEncoderAttention
from ..quant.quantizer import quantize_codes
from ..ref.bundle import Bundle
from ..ref.layers import attention_probabilities, run_attention_values, run_layer
from .layers import ATTENTION_TYPES, projection_consumers


@dataclass
class CheckStats:
    layer: str
    stage: str
    elements: int = 0
    equal: int = 0
    max_diff: int = 0

    def add(self, ref: np.ndarray, fq: np.ndarray) -> None:
        diff = np.abs(ref.astype(np.int64) - fq.astype(np.int64))
        self.elements += diff.size
        self.equal += int((diff == 0).sum())
        self.max_diff = max(self.max_diff, int(diff.max()) if diff.size else 0)

    @property
    def match(self) -> float:
        return self.equal / max(self.elements, 1)


def _codes(q: nn.Module, x: torch.Tensor) -> np.ndarray:
    return q.codes(x.detach()).to(torch.int64).cpu().numpy()


def _float64_output(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The fake-quant layer's output computed in float64 from the same quantized input and weight.

    Host codes (16-bit) resolve 2^-14 of a layer's largest output, finer than the float32 rounding of
    long fake-quant sums with cancellation; evaluated in float32 they disagreed with the exact integer
    result on up to 0.1 % of elements for that reason alone."""
    x_hat = module.input_quantizer(x).double()
    w_hat = module.quantized_weight().double()
    bias = None if module.bias is None else module.bias.double()
    if isinstance(module, QuantConv2d):
        return F.conv2d(x_hat, w_hat, bias, module.stride, module.padding, module.dilation, module.groups)
    return F.linear(x_hat, w_hat, bias)


class CrossCheck:
    """Hooks that compare every layer while the fake-quant model runs (see the module docstring)."""

    def __init__(self, qmodel: SegmentModel, bundle: Bundle):
        self.qmodel, self.bundle = qmodel, bundle
        self.stats: dict[tuple[str, str], CheckStats] = {}
        self.pending: dict[str, dict[str, np.ndarray]] = {}
        self.handles = []
        self.consumers = {}
        for name, module in qmodel.named_modules():
            if isinstance(module, ATTENTION_TYPES):
                for proj, (scale, zero, bits, _) in projection_consumers(module).items():
                    self.consumers[f"{name}.{proj}"] = (torch.tensor(scale, dtype=torch.float32),
                                                        torch.tensor(zero, dtype=torch.float32), bits)

    def _stat(self, layer: str, stage: str) -> CheckStats:
        return self.stats.setdefault((layer, stage), CheckStats(layer, stage))

    def _gemm_hook(self, name: str):
        layer = self.bundle.layer(name)

        def hook(module, inputs, output):
            ref = run_layer(layer, _codes(module.input_quantizer, inputs[0]))
            if name in self.consumers:
                scale, zero, bits = self.consumers[name]
                shape = [-1] + [1] * (output.dim() - 2) if isinstance(module, QuantConv2d) else [-1]
                fq = quantize_codes(output.detach(), scale.reshape(shape), zero.reshape(shape), bits)
            else:
                out = layer.params["output"]
                fq = torch.clamp(torch.round(_float64_output(module, inputs[0]) / out["scale"]), out["min"], out["max"])
            self._stat(name, layer.params["output"]["to"]).add(ref, fq.to(torch.int64).numpy())
        return hook

    def _qkv_hook(self, name: str, which: str, attn: nn.Module):
        def hook(module, inputs):
            codes = _codes(module, inputs[0])
            if isinstance(attn, QuantDecoderAttention):  # quantized before the head split
                b, n, c = codes.shape
                codes = codes.reshape(b, n, attn.num_heads, c // attn.num_heads).transpose(0, 2, 1, 3)
            self.pending.setdefault(name, {})[which] = codes
        return hook

    def _softmax_hook(self, name: str):
        layer = self.bundle.layer(name)

        def hook(module, args, kwargs):
            codes = self.pending[name]
            ref = attention_probabilities(layer, codes["q"], codes["k"])
            fq = _codes(module, args[0])
            codes["probs"] = fq
            self._stat(name, "softmax").add(ref, fq)
        return hook

    def _av_hook(self, name: str, attn: nn.Module):
        layer = self.bundle.layer(name)

        def hook(module, inputs):
            codes = self.pending.pop(name)
            ref = run_attention_values(layer, codes["probs"], codes["v"])  # [B, heads, Nq, d]
            x = inputs[0]
            if isinstance(attn, QuantSamEncoderAttention):
                b, h, w, _ = x.shape
                ref = ref.reshape(b, attn.num_heads, h, w, -1).transpose(0, 2, 3, 1, 4)
            else:
                ref = ref.transpose(0, 2, 1, 3)
            fq = _codes(module.input_quantizer, x)
            self._stat(name, "A.V").add(ref.reshape(fq.shape), fq)
        return hook

    def __enter__(self) -> "CrossCheck":
        for name, module in self.qmodel.named_modules():
            if isinstance(module, (QuantLinear, QuantConv2d)):
                self.handles.append(module.register_forward_hook(self._gemm_hook(name)))
            elif isinstance(module, ATTENTION_TYPES):
                for which in "qkv":
                    q = getattr(module, f"{which}_quantizer")
                    self.handles.append(q.register_forward_pre_hook(self._qkv_hook(name, which, module)))
                self.handles.append(module.softmax_quantizer.register_forward_pre_hook(
                    self._softmax_hook(name), with_kwargs=True))
                proj = module.out_proj if isinstance(module, QuantDecoderAttention) else module.proj
                self.handles.append(proj.register_forward_pre_hook(self._av_hook(name, module)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def cross_check(qmodel: SegmentModel, bundle: Bundle, items: list[CalibItem], progress: bool = True) -> list[CheckStats]:
    """Per-layer agreement of the integer reference with the fake-quant model on ``items``."""
    with CrossCheck(qmodel, bundle) as check:
        run_items(qmodel, items, desc="cross-check", progress=progress)
    return list(check.stats.values())


def format_table(stats: list[CheckStats]) -> str:
    lines = ["| layer | output | elements | equal % | max |diff| |", "|---|---|---|---|---|"]
    for s in stats:
        lines.append(f"| {s.layer} | {s.stage} | {s.elements} | {100 * s.match:.3f} | {s.max_diff} |")
    total = sum(s.elements for s in stats)
    equal = sum(s.equal for s in stats)
    worst = min(stats, key=lambda s: s.match) if stats else None
    lines.append("")
    lines.append(f"{len(stats)} checks, {total} elements, {100 * equal / max(total, 1):.4f}% equal overall; "
                 f"lowest {100 * worst.match:.3f}% ({worst.layer} {worst.stage}); "
                 f"largest difference {max((s.max_diff for s in stats), default=0)} code(s)" if worst else "no checks")
    return "\n".join(lines)
