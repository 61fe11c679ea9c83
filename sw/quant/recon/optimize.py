"""Training one reconstruction unit (methods.md §1.5).

Per step: a random batch of the unit's cached rows; with QDrop the unit input mixes quantized and
float inputs element by element and every activation quantizer inside keeps its quantized value with
probability ``drop_prob``; the loss is the output error summed over channels and averaged over the
rest, plus AdaRound's regulariser once warm-up is over. Whatever happens, the unit leaves with fixed
rounding bits, plain scale buffers and ``drop_prob`` back at 1, so nothing of training leaks into
inference.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import QuantConfig
from ..prepare import is_weight_quantizer, iter_quantizers, weight_owner
from .adaround import SoftRounding, beta_schedule
from .units import UnitData


def _mix(quantized: torch.Tensor, fp: torch.Tensor, keep: float) -> torch.Tensor:
    if keep >= 1.0:
        return quantized
    return torch.where(torch.rand_like(quantized) < keep, quantized, fp)


def _output_error(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    channel_dim = 1 if out.dim() == 4 else -1
    return (out - target).pow(2).sum(channel_dim).mean()


class _Training:
    """Puts a unit's quantizers in training form and, on exit, back into inference form."""

    def __init__(self, unit: nn.Module, cfg: QuantConfig):
        self.unit, self.cfg = unit, cfg
        self.learn_scales = cfg.recon in ("brecq", "qdrop")
        self.keep = cfg.drop_prob if cfg.recon == "qdrop" else 1.0
        self.roundings: list[SoftRounding] = []
        self.scales: list[nn.Parameter] = []

    def __enter__(self) -> "_Training":
        for name, q in iter_quantizers(self.unit):
            if is_weight_quantizer(name):
                weight = weight_owner(self.unit, name).weight
                q.round_up = None
                q.soft_rounding = SoftRounding(weight, q._shaped(q.scale, weight))
                self.roundings.append(q.soft_rounding)
            else:
                if self.learn_scales:
                    q.learned_scale = nn.Parameter(q.scale.detach().clone())
                    self.scales.append(q.learned_scale)
                q.drop_prob = self.keep
        return self

    def __exit__(self, *exc) -> None:
        for name, q in iter_quantizers(self.unit):
            if is_weight_quantizer(name):
                if q.soft_rounding is not None:
                    q.round_up = q.soft_rounding.hard()
                    q.soft_rounding = None
            else:
                if q.learned_scale is not None:
                    q.scale = q.learned_scale.detach().clamp(min=1e-8).clone()
                    q.learned_scale = None
                q.drop_prob = 1.0


def batch_rows(data: UnitData, tokens: int) -> int:
    return int(min(data.rows, max(1, round(tokens / data.tokens_per_row()))))


def train_unit(unit: nn.Module, quant_in: UnitData, fp: UnitData, cfg: QuantConfig) -> dict:
    """Reconstruct ``unit`` in place; returns the first and last steps' output errors."""
    params = list(unit.parameters())
    saved_flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    batch = batch_rows(fp, cfg.recon_tokens)
    losses = []
    try:
        with _Training(unit, cfg) as training:
            optimizers = [torch.optim.Adam([r.alpha for r in training.roundings], lr=cfg.round_lr)]
            schedulers = []
            if training.scales:
                scale_opt = torch.optim.Adam(training.scales, lr=cfg.scale_lr)
                optimizers.append(scale_opt)
                schedulers.append(torch.optim.lr_scheduler.CosineAnnealingLR(scale_opt, T_max=cfg.recon_iters, eta_min=0.0))
            for step in range(cfg.recon_iters):
                index = torch.randint(fp.rows, (batch,)) if batch < fp.rows else torch.arange(fp.rows)
                q, f = quant_in.select(index), fp.select(index)
                args = [_mix(a, b, training.keep) for a, b in zip(q.args, f.args)]
                kwargs = {k: _mix(q.kwargs[k], f.kwargs[k], training.keep) for k in q.kwargs}
                error = _output_error(unit(*args, **kwargs), f.output)
                loss = error
                beta = beta_schedule(step, cfg.recon_iters, cfg.warmup, cfg.beta_start, cfg.beta_end)
                if beta is not None and training.roundings:
                    loss = loss + cfg.round_reg * sum(r.regularizer(beta) for r in training.roundings)
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                for opt in optimizers:
                    opt.step()
                for sched in schedulers:
                    sched.step()
                losses.append(error.item())
    finally:
        for p, flag in zip(params, saved_flags):
            p.requires_grad_(flag)
    return {"first": losses[0] if losses else None, "last": losses[-1] if losses else None}
