"""Reconstruction units inside a segment, and the cached tensors each unit is trained on.

Block granularity (BRECQ, QDrop; methods.md §1.5): every attention module and every MLP is a unit,
and any quantized linear/conv outside them (TinyViT's local conv) is one too; a segment holding none
of these (patch merging, neck) is one unit as a whole. Layer granularity (AdaRound): every quantized
linear/conv is a unit. Units are ordered by when they run, found by running the segment once.

A unit's cached inputs are concatenated over images along dimension 0 (windows, prompts, images), so
a training batch is a random subset of rows. Token-wise units (MLPs, linears) are flattened to one
row per token first, which lets a batch mix tokens of every image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ...models.base import SegmentModel
from ..qmodules import QuantConv2d, QuantDecoderAttention, QuantLinear, QuantSamEncoderAttention, QuantTinyViTAttention
from ..prepare import MLP_CLASSES
from .streams import Segment, State

ATTENTIONS = (QuantTinyViTAttention, QuantSamEncoderAttention, QuantDecoderAttention)


def _is_block_unit(module: nn.Module) -> bool:
    return isinstance(module, ATTENTIONS) or type(module).__name__ in MLP_CLASSES


def _candidates(segment_module: nn.Module, prefix: str, granularity: str) -> list[str]:
    if granularity == "layer":
        return [f"{prefix}.{n}" if n else prefix for n, m in segment_module.named_modules()
                if isinstance(m, (QuantLinear, QuantConv2d))]
    found: list[str] = []
    blocks: list[str] = []

    def walk(module: nn.Module, path: str) -> None:
        if _is_block_unit(module):
            blocks.append(path)
        if _is_block_unit(module) or isinstance(module, (QuantLinear, QuantConv2d)):
            found.append(path)
            return
        for name, child in module.named_children():
            walk(child, f"{path}.{name}")

    walk(segment_module, prefix)
    return found if blocks else [prefix]  # patch merging, neck: the whole segment is one block


def token_wise(module: nn.Module) -> bool:
    # The float reference holds plain nn.Linear where the quantized model holds QuantLinear; both
    # sides of a unit must be flattened alike or their rows do not line up.
    return isinstance(module, (QuantLinear, nn.Linear)) or type(module).__name__ in MLP_CLASSES


@torch.no_grad()
def units_in_order(model: SegmentModel, segment: Segment, state: State, granularity: str) -> list[str]:
    """Paths of the segment's units in the order they run."""
    module = model.get_submodule(segment.path)
    candidates = _candidates(module, segment.path, granularity)
    order: list[str] = []
    handles = [model.get_submodule(p).register_forward_pre_hook(lambda _m, _a, p=p: order.append(p) if p not in order else None)
               for p in candidates]
    try:
        segment.run(model, state)
    finally:
        for h in handles:
            h.remove()
    return order


@dataclass
class UnitData:
    """A unit's inputs (positional and keyword) and output, rows along dimension 0."""

    args: list[torch.Tensor]
    kwargs: dict[str, torch.Tensor]
    output: torch.Tensor | None

    @property
    def rows(self) -> int:
        return (self.args or list(self.kwargs.values()))[0].shape[0]

    def tokens_per_row(self) -> int:
        tensors = self.args + list(self.kwargs.values())
        return max(max(1, t[0].numel() // (t.shape[1] if t.dim() == 4 else t.shape[-1])) for t in tensors)

    def select(self, index: torch.Tensor) -> "UnitData":
        return UnitData([t[index] for t in self.args], {k: t[index] for k, t in self.kwargs.items()},
                        None if self.output is None else self.output[index])


def _flatten_tokens(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1])


@torch.no_grad()
def capture(model: SegmentModel, segment: Segment, states: list[State], paths: list[str],
            with_output: bool) -> dict[str, UnitData]:
    """Run the segment on every state and collect each unit's inputs (and outputs)."""
    per_unit: dict[str, list[tuple]] = {p: [] for p in paths}
    handles = []
    for p in paths:
        def hook(_m, args, kwargs, output, p=p):
            per_unit[p].append((args, kwargs, output if with_output else None))
        handles.append(model.get_submodule(p).register_forward_hook(hook, with_kwargs=True))
    try:
        for state in states:
            segment.run(model, state)
    finally:
        for h in handles:
            h.remove()
    data = {}
    for p, calls in per_unit.items():
        flat = token_wise(model.get_submodule(p))
        fix = _flatten_tokens if flat else (lambda t: t)
        args = [torch.cat([fix(c[0][i]) for c in calls]) for i in range(len(calls[0][0]))]
        kwargs = {k: torch.cat([fix(c[1][k]) for c in calls]) for k in calls[0][1]}
        output = torch.cat([fix(c[2]) for c in calls]) if with_output else None
        data[p] = UnitData(args, kwargs, output)
    return data
