"""Calibration statistics: each observer sees tensors and proposes a clipping range [lo, hi].

Observers work on a ``[C, n]`` view (C = 1 for per-tensor), so per-tensor and per-channel share one
implementation. Percentile and MSE observers decide a range per call (one call = one calibration
image through that layer) and average the ranges over calls, as the reference implementations of
those baselines do; min/max keeps the extremes over all calls.
"""

from __future__ import annotations

import torch

from ..errors import SamhwError

# Percentile and MSE searches look at an evenly strided subset of large tensors. Early TinyViT
# layers hold 16M activations per image; 2^18 samples per channel place a 99.99th percentile among
# ~26 tail samples, and the MSE curve (evaluated 100 times per call) is stable with 2^16.
PERCENTILE_SAMPLES = 1 << 18
MSE_SAMPLES = 1 << 16


def _as_rows(x: torch.Tensor, ch_axis: int | None) -> torch.Tensor:
    x = x.float()
    if ch_axis is None:
        return x.reshape(1, -1)
    return x.movedim(ch_axis, 0).reshape(x.shape[ch_axis], -1)


def _subsample(rows: torch.Tensor, limit: int) -> torch.Tensor:
    n = rows.shape[1]
    if n <= limit:
        return rows
    step = -(-n // limit)
    return rows[:, ::step]


class Observer:
    def __init__(self, ch_axis: int | None = None):
        self.ch_axis = ch_axis
        self.lo: torch.Tensor | None = None
        self.hi: torch.Tensor | None = None
        self.calls = 0

    def observe(self, x: torch.Tensor) -> None:
        lo, hi = self._propose(_as_rows(x, self.ch_axis))
        self._accumulate(lo, hi)
        self.calls += 1

    def _propose(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _accumulate(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        # Running mean of per-call proposals.
        if self.lo is None:
            self.lo, self.hi = lo, hi
        else:
            k = self.calls
            self.lo = (self.lo * k + lo) / (k + 1)
            self.hi = (self.hi * k + hi) / (k + 1)

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.lo is None:
            raise RuntimeError(f"{type(self).__name__} saw no data; was calibration run?")
        if self.ch_axis is None:
            return self.lo[0], self.hi[0]
        return self.lo, self.hi


class MinMaxObserver(Observer):
    """Extremes over everything seen."""

    def _propose(self, rows):
        return rows.amin(1), rows.amax(1)

    def _accumulate(self, lo, hi):
        if self.lo is None:
            self.lo, self.hi = lo, hi
        else:
            self.lo = torch.minimum(self.lo, lo)
            self.hi = torch.maximum(self.hi, hi)


class AvgMinMaxObserver(Observer):
    """Mean over calls of each call's min and max (PTQ4SAM's default activation observer)."""

    def _propose(self, rows):
        return rows.amin(1), rows.amax(1)


class PercentileObserver(Observer):
    """Clips at the ``percentile``-th and ``100 - percentile``-th percentiles of each call."""

    def __init__(self, percentile: float = 99.99, ch_axis: int | None = None):
        super().__init__(ch_axis)
        if not 50.0 < percentile <= 100.0:
            raise SamhwError(f"percentile {percentile} must lie in (50, 100]")
        self.percentile = percentile

    def _propose(self, rows):
        rows = _subsample(rows, PERCENTILE_SAMPLES)
        n = rows.shape[1]
        upper = max(1, min(n, int(round(self.percentile / 100.0 * n))))
        lower = max(1, min(n, n + 1 - upper))
        return rows.kthvalue(lower, dim=1).values, rows.kthvalue(upper, dim=1).values


class MSEObserver(Observer):
    """OMSE: shrinks the observed range by factors 1/grid, 2/grid, ..., 1 and keeps the factor with the
    smallest ``mean |x_hat - x|^p`` for the target bit width (per row)."""

    def __init__(self, bits: int, p: float = 2.0, grid: int = 100, ch_axis: int | None = None):
        super().__init__(ch_axis)
        self.bits, self.p, self.grid = bits, p, grid

    def _propose(self, rows):
        from .uniform import fake_quantize, qparams_from_range

        rows = _subsample(rows, MSE_SAMPLES).contiguous()  # the 100 passes below read it densely
        lo0, hi0 = rows.amin(1), rows.amax(1)
        best_err = torch.full_like(lo0, float("inf"))
        best_lo, best_hi = lo0.clone(), hi0.clone()
        for i in range(1, self.grid + 1):
            alpha = i / self.grid
            lo, hi = lo0 * alpha, hi0 * alpha
            scale, zero_point = qparams_from_range(lo, hi, self.bits)
            err = (fake_quantize(rows, scale[:, None], zero_point[:, None], self.bits) - rows).abs().pow(self.p).mean(1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_lo = torch.where(better, lo, best_lo)
            best_hi = torch.where(better, hi, best_hi)
        return best_lo, best_hi


def make_observer(kind: str, bits: int, ch_axis: int | None, percentile: float = 99.99,
                  mse_norm: float = 2.0, mse_grid: int = 100) -> Observer:
    if kind == "minmax":
        return MinMaxObserver(ch_axis)
    if kind == "avgminmax":
        return AvgMinMaxObserver(ch_axis)
    if kind == "percentile":
        return PercentileObserver(percentile, ch_axis)
    if kind == "mse":
        return MSEObserver(bits, mse_norm, mse_grid, ch_axis)
    raise SamhwError(f"unknown observer '{kind}' (choose from minmax, avgminmax, percentile, mse)")
