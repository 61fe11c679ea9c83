"""Statistic calibration: run calibration images (with box prompts) through the model with the
activation observers on and fake quantization off, then fix every quantizer's scale and zero point.

All quantizers observe the float model in one pass (as in PTQ4SAM's statistic baselines); weights are
data independent and observed directly. Recipes with reconstruction then refine the calibrated model
unit by unit against the float model (sw/quant/recon).
"""

from __future__ import annotations

import time

import torch

from ..data.calibration import CalibItem
from ..models.base import SegmentModel
from .big import apply_big
from .forward import run_items
from .pcc import apply_pcc
from .recon import reconstruct
from .recon.par import reconstruct_par
from .config import QuantConfig
from .prepare import is_weight_quantizer, iter_quantizers, quantize_model, set_quant_state, weight_owner


def calibrate(qmodel: SegmentModel, items: list[CalibItem], progress: bool = True,
              fp_model: SegmentModel | None = None, seed: int = 0) -> float:
    """Calibrate all quantizers of ``qmodel`` on ``items`` and enable them; returns seconds taken.

    With BIG on, bimodal keys are detected on the first item's float forward and their signs folded
    into the weights first (methods.md §1.4 step 1), so every statistic sees the folded model. With
    PCC on, the decoder q/k clipping is searched next and those quantizers skip statistic calibration.
    Reconstruction needs ``fp_model``, the float model ``qmodel`` was made from.
    """
    cfg = qmodel.quant_config
    if cfg.recon != "none" and fp_model is None:
        raise ValueError(f"recipe '{cfg.recipe}' reconstructs against the float model; pass fp_model")
    start = time.perf_counter()
    phases = qmodel.calib_phases = {}   # seconds per phase: where calibration time goes

    def phase_done(name: str, since: float) -> float:
        now = time.perf_counter()
        phases[name] = round(now - since, 2)
        return now

    set_quant_state(qmodel, act=False, weight=False, observe_act=False)
    big_scope = cfg.big
    t = start
    if big_scope != "none":
        qmodel.big_reports = apply_big(qmodel, lambda: run_items(qmodel, items[:1], "BIG", progress=False), big_scope)
        t = phase_done("BIG", t)
    fixed: set[str] = set()
    if cfg.pcc:
        # PCC's clipped q/k stay on while everything else is observed, so downstream statistics (the
        # softmax's AGQ above all) see them (methods.md §4.2 step 4).
        qmodel.pcc_log = apply_pcc(qmodel, items, progress=progress)
        fixed = {r["quantizer"] for r in qmodel.pcc_log}
        t = phase_done("PCC", t)
    set_quant_state(qmodel, observe_act=True)
    for name in fixed:
        qmodel.get_submodule(name).observing = False
    run_items(qmodel, items, desc="calibrate", progress=progress)
    set_quant_state(qmodel, observe_act=False)
    with torch.no_grad():
        for name, q in iter_quantizers(qmodel):
            if is_weight_quantizer(name):
                q.observer.observe(weight_owner(qmodel, name).weight.detach())
            if name not in fixed:
                q.finalize()
    set_quant_state(qmodel, act=True, weight=True)
    t = phase_done("statistics", t)
    if cfg.recon == "par":
        qmodel.recon_log = reconstruct_par(qmodel, fp_model, items, seed=seed, progress=progress)
    elif cfg.recon != "none":
        qmodel.recon_log = reconstruct(qmodel, fp_model, items, seed=seed, progress=progress)
    if cfg.recon != "none":
        phase_done("reconstruction", t)
    return time.perf_counter() - start


def quantize(model: SegmentModel, cfg: QuantConfig, items: list[CalibItem],
             progress: bool = True, seed: int = 0) -> tuple[SegmentModel, float]:
    """A calibrated fake-quant copy of ``model`` and the calibration wall-clock seconds."""
    qmodel = quantize_model(model, cfg)
    seconds = calibrate(qmodel, items, progress=progress, fp_model=model, seed=seed)
    return qmodel, seconds
