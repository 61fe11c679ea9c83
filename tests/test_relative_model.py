"""SAM ViT's exported relative positions on the softmax path: every global attention of the tiny SAM ViT
AHCPTQ W4A4 bundle (relative-position tables drawn nonzero, conftest), on query and key codes captured
from a real image, compiled as QK^T + softmax for a core whose relative grid is the bundle's global grid
and run on the functional model, equals sw/ref's integer softmax and stays within a code of the host's
float step; so do its windowed attentions (4 x 4 windows: rows of one beat of 4 key slots, or, on a path of
8 lanes, of 8 slots whose last 4 are padding)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hw.compiler.program import compile_layer
from hw.core.config import PRESETS
from hw.fsim import run as fsim_run
from sw.bundle import AttentionLayer, load_bundle
from sw.ref.kernels import attention_scores
from sw.ref.layers import probabilities_from_scores
from sw.ref.log_softmax import LogSoftmax

CORE = dataclasses.replace(PRESETS["w4-16x16"], softmax_lanes=4, softmax_relative_side=8)   # the tiny 8 x 8 grid
CORES = {"4-lanes": CORE, "8-lanes": dataclasses.replace(CORE, softmax_lanes=8)}


@pytest.fixture(scope="module")
def captured(tiny_ahcptq, calib_items):
    from sw.export.capture import capture_inputs

    return capture_inputs(tiny_ahcptq, calib_items[1])


@pytest.mark.parametrize("core", CORES)
def test_exported_relative_positions_on_the_path_equal_the_integer_softmax(tiny_sam_vit_bundle, captured, core):
    config = CORES[core]
    bundle = load_bundle(tiny_sam_vit_bundle)
    attentions = [layer for layer in bundle.of_kind(AttentionLayer) if layer.rel_pos_h is not None]
    global_ = [layer for layer in attentions if layer.rel_pos_h.shape[0] == 2 * config.softmax_relative_side - 1]
    assert global_ and len(global_) < len(attentions)
    for layer in attentions:
        q, k = (captured[f"{layer.name}.{part}"].astype(np.int64)[None] for part in ("q", "k"))
        program = compile_layer(config, layer, "probs", {"q": q.shape, "k": k.shape})
        inv = program.invocations[0]
        assert "q.relative" in inv.inputs
        # a window's key rows: one beat of 4 slots, or 8 slots of which 4 are padding
        padded = layer not in global_ and config.softmax_lanes == 8
        assert ("key_slots" in inv.inputs["k"].params) == padded, layer.name
        memory = program.memory()
        inv.write_inputs(memory, config.bus_bits, q=q, k=k)
        for streams in inv.parts:
            memory = fsim_run(config, streams, memory)
        codes = inv.read_outputs(memory, config.bus_bits)["probs"]
        scores = attention_scores(q, layer.q.zero_point, k, layer.k.zero_point)
        unit = LogSoftmax.of(layer)
        assert np.array_equal(codes, unit.codes(scores, q)), layer.name
        assert not np.array_equal(codes, dataclasses.replace(unit, relative=None).codes(scores)), layer.name
        host = probabilities_from_scores(layer, scores[0], q[0])     # the host step takes [heads, N, ...]
        assert np.abs(codes[0] - host).max() <= 1 and np.mean(codes[0] == host) >= 0.99, layer.name
