"""Training one reconstruction unit (methods.md §1.5).

Per step: a random batch of the unit's cached rows; with QDrop the unit input mixes quantized and
float inputs element by element and every activation quantizer inside keeps its quantized value with
probability ``drop_prob``; the loss is the output error summed over channels and averaged over the
rest, plus AdaRound's regulariser once warm-up is over. Whatever happens, the unit leaves with fixed
rounding bits, plain scale buffers and ``drop_prob`` back at 1, so nothing of training leaks into
inference.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch
import torch.nn as nn

from ..cag import CAGQuantizer
from ..config import QuantConfig
from ..uniform import keep_quantized
from ..prepare import is_weight_quantizer, iter_quantizers, weight_owner
from .adaround import SoftRounding, beta_schedule
from .units import UnitData


def output_error(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    channel_dim = 1 if out.dim() == 4 else -1
    return (out - target).pow(2).sum(channel_dim).mean()


class _Training:
    """Puts a unit's quantizers in training form and, on exit, back into inference form."""

    def __init__(self, unit: nn.Module, cfg: QuantConfig):
        self.unit, self.cfg = unit, cfg
        self.learn_scales = cfg.recon in ("brecq", "qdrop", "par")
        self.keep = cfg.drop_prob if cfg.recon in ("qdrop", "par") else 1.0
        self.roundings: list[SoftRounding] = []
        self.activations = [q for name, q in iter_quantizers(unit) if not is_weight_quantizer(name)]
        self.grouped = [q for q in self.activations if isinstance(q, CAGQuantizer) and q.progressive]

    def scales(self) -> list[nn.Parameter]:
        return [p for q in self.activations for p in q.parameters(recurse=False)]

    def merge_groups(self, step: int) -> bool:
        """Apply the CAG merges scheduled for ``step``; True if any group parameters were replaced."""
        merged = False
        for q in self.grouped:
            groups = q.merge_schedule(self.cfg.recon_iters).get(step)
            if groups is not None:
                q.stop_scale_learning()
                q.merge(groups)
                if self.learn_scales:
                    q.start_scale_learning()
                merged = True
        return merged

    def __enter__(self) -> "_Training":
        for name, q in iter_quantizers(self.unit):
            if is_weight_quantizer(name):
                weight = weight_owner(self.unit, name).weight
                q.round_up = None
                q.soft_rounding = SoftRounding(weight, q._shaped(q.scale, weight))
                self.roundings.append(q.soft_rounding)
        for q in self.activations:
            if self.learn_scales:
                q.start_scale_learning()
            q.drop_prob = self.keep
        return self

    def __exit__(self, *exc) -> None:
        for name, q in iter_quantizers(self.unit):
            if is_weight_quantizer(name):
                if q.soft_rounding is not None:
                    q.round_up = q.soft_rounding.hard()
                    q.soft_rounding = None
        for q in self.activations:
            q.stop_scale_learning()
            q.drop_prob = 1.0
        for q in self.grouped:
            if q.scale.numel() > q.groups:  # too few steps for the whole merge schedule
                q.merge(q.groups)


def batch_rows(data: UnitData, tokens: int) -> int:
    return int(min(data.rows, max(1, round(tokens / data.tokens_per_row()))))


def _scale_optimizer(params: list[nn.Parameter], lr: float, steps: int):
    """Adam on the activation scales, cosine-annealed to 0 over ``steps``; (None, None) if none."""
    if not params:
        return None, None
    opt = torch.optim.Adam(params, lr=lr)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps), eta_min=0.0)


@contextmanager
def frozen(module: nn.Module):
    """No parameter of ``module`` collects gradients inside the block; the flags come back after."""
    params = list(module.parameters())
    saved_flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, saved_flags):
            p.requires_grad_(flag)


def train_unit(unit: nn.Module, quant_in: UnitData, fp: UnitData, cfg: QuantConfig,
               forward: Callable | None = None,
               objective: Callable[[object, torch.Tensor], torch.Tensor] | None = None,
               batch: int | None = None) -> dict:
    """Reconstruct ``unit`` in place; returns the first and last steps' errors.

    By default a step runs ``unit`` on the batch's inputs and the error is the output error against
    ``fp.output``. PAR swaps both: ``forward`` runs the unit's quantizers on something wider than the
    module (an encoder stage, a decoder block with its residuals), and ``objective(output, rows)``
    scores what that output does further down the float model; ``batch`` fixes the rows per step.
    """
    forward = unit if forward is None else forward
    batch = batch_rows(fp, cfg.recon_tokens) if batch is None else min(batch, fp.rows)
    losses = []
    with frozen(unit), _Training(unit, cfg) as training:
        round_opt = torch.optim.Adam([r.alpha for r in training.roundings], lr=cfg.round_lr)
        scale_opt, scale_sched = _scale_optimizer(training.scales(), cfg.scale_lr, cfg.recon_iters)
        for step in range(cfg.recon_iters):
            if training.merge_groups(step):
                # The group scales are new tensors; like the reference, restart their optimizer.
                scale_opt, scale_sched = _scale_optimizer(training.scales(), cfg.scale_lr, cfg.recon_iters - step)
            index = torch.randint(fp.rows, (batch,)) if batch < fp.rows else torch.arange(fp.rows)
            q, f = quant_in.select(index), fp.select(index)
            args = [keep_quantized(a, b, training.keep) for a, b in zip(q.args, f.args)]
            kwargs = {k: keep_quantized(q.kwargs[k], f.kwargs[k], training.keep) for k in q.kwargs}
            out = forward(*args, **kwargs)
            error = output_error(out, f.output) if objective is None else objective(out, index)
            loss = error
            beta = beta_schedule(step, cfg.recon_iters, cfg.warmup, cfg.beta_start, cfg.beta_end)
            if beta is not None and training.roundings:
                loss = loss + cfg.round_reg * sum(r.regularizer(beta) for r in training.roundings)
            round_opt.zero_grad(set_to_none=True)
            if scale_opt is not None:
                scale_opt.zero_grad(set_to_none=True)
            loss.backward()
            round_opt.step()
            if scale_opt is not None:
                scale_opt.step()
                scale_sched.step()
            losses.append(error.item())
    return {"first": losses[0] if losses else None, "last": losses[-1] if losses else None}
