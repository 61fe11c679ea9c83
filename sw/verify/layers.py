"""``samhw verify layers``: the integer reference against the fake-quant model, layer by layer, on real
images (docs/crosscheck_<recipe>_<bits>.md).

During a fake-quant forward, every quantized layer's input is encoded with the layer's own input
quantizer, run through the integer reference from the bundle, and the reference's output codes are
compared with the fake-quant output encoded the same way: the consuming quantizer's codes as the model
computed them, or the host code of the layer's fake-quant output evaluated in float64. Attentions are
checked in their two integer stages: softmax codes from q/k codes, and the output projection's input
codes from the probability and value codes. Each check starts from the fake-quant
model's own codes, so differences never compound.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.calibration import CalibItem
from ..export.layers import ATTENTION_TYPES, projection_consumers
from ..models.base import SegmentModel
from ..quant.forward import run_items
from ..quant.qmodules import QuantConv2d, QuantDecoderAttention, QuantLinear, QuantSamEncoderAttention
from ..quant.uniform import quantize_codes
from ..bundle import Bundle
from ..ref.layers import attention_probabilities, run_attention_values, run_layer
from .checked import CheckedModelSpec


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
    result for that reason alone."""
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
                out = layer.output
                fq = torch.clamp(torch.round(_float64_output(module, inputs[0]) / out.scale), out.q_min, out.q_max)
            self._stat(name, layer.output.TAG).add(ref, fq.to(torch.int64).numpy())
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


def verify_layers(spec: CheckedModelSpec, images: int, command: str, out: str | Path | None = None,
                  progress: bool = True) -> tuple[Path, list[CheckStats]]:
    """Calibrate (or load) the model, export its bundle, cross-check it on the first ``images`` val images
    and write the report (default docs/crosscheck_<recipe>_<bits>.md); returns the path and the rows."""
    from ..data.calibration import items_from_coco
    from .checked import checked_model, exported_bundle
    from .report import generated_by, write_report

    checked = checked_model(spec, progress)
    cfg = checked.cfg
    val = items_from_coco(spec.val_split(), images, max_prompts=16)
    with exported_bundle(checked, progress) as bundle:
        stats = cross_check(checked.qmodel, bundle, val, progress)
    table = format_table(stats)
    below = [s for s in stats if s.match < 0.999 or s.max_diff > 1]
    path = write_report(out or checked.report_path("crosscheck"), [
        f"# Integer reference vs fake-quant: {checked.model.name} {cfg.recipe} {cfg.bits_name.upper()}", "",
        generated_by(command, torch.get_num_threads()),
        f"Calibration: {len(checked.items)} coco_tiny train images; checked on {len(val)} val images with their "
        "ground-truth boxes (at most 16). Each row starts from the fake-quant model's own input codes. `codes`: the "
        "consuming q/k/v quantizer's codes; `host`: the signed 16-bit host code (fake-quant side evaluated in "
        "float64); `softmax`: the post-softmax codes; `A.V`: the output projection's input codes.", "",
        f"Layers below 99.9 % equal or differing by more than one code: {len(below)}.", "",
        table, ""])
    print(table.splitlines()[-1])
    return path, below
