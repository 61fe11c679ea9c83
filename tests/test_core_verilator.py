"""The core's RTL on Verilator (cocotb) against the integer reference, the functional model and the
cycle model: a small sample of the randomized co-simulation (``scripts/core_random_cosim.py``).

Random layers of every op kind (``sim.random_layers.KINDS``: linear with uniform, CAG and HLUQ inputs,
dense, depthwise and strided convs, QK^T, A.V with AGQ and with a uniform softmax), plus each kind's
first layer again with every input code at its lowest and at its highest, and the smallest layer the
randomized co-simulation found hanging the core (``hang_regression``), are compiled for a 4 x 4 core
with small buffers (several jobs, single- and double-buffered, several runs of the core) and all run in
as few simulator processes as possible. Every output element must equal sw/ref, every output word the
functional model's, every run's cycle counter the cycle model's. The build is cached in sim_build/
(keyed by the design): the first run after a change of hw/core spends about 25 s generating and
building the core, the test itself about 10 s.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from sim.random_layers import KINDS, RandomCase, random_case, random_codes

ROOT = Path(__file__).resolve().parents[1]
CORE = "w8-4x4"
LAYERS_PER_KIND = 3

pytestmark = pytest.mark.verilator


def _missing() -> str | None:
    """Why Verilator co-simulation cannot run here, or None."""
    if importlib.util.find_spec("cocotb") is None or importlib.util.find_spec("cocotb_tools") is None:
        return "cocotb (the runner of the Verilator testbench) is not installed"
    from sim.verilator import verilator_root

    try:
        root = verilator_root()
    except ValueError as exc:
        return str(exc)
    if not (root / "bin" / "verilator").exists() and not (root / "bin" / "verilator_bin").exists():
        return f"the verilator package at {root} has no verilator binary"
    return None


@pytest.fixture(scope="module")
def simulator():
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from sim.core_runner import CoreSimulator
    from sim.random_cosim import cosim_config

    config = cosim_config(CORE)
    sim = CoreSimulator(config, 1 << 16, ROOT / "sim_build")
    sim.build()
    return config, sim


def sample_cases(config, seed: int = 24) -> list[RandomCase]:
    """LAYERS_PER_KIND random layers of each kind, and the first again with all-lowest and all-highest
    input codes."""
    from hw.compiler import CompileError
    from sim.random_cosim import TooLarge, prepare

    cases = []
    for kind in KINDS:
        rng = np.random.default_rng([seed, KINDS.index(kind)])
        drawn = []
        while len(drawn) < LAYERS_PER_KIND:
            case = random_case(rng, kind, config)
            try:
                prepare(config, case, 1 << 16)
            except (CompileError, TooLarge):
                continue
            drawn.append(case)
        first = drawn[0]
        for extreme in ("low", "high"):
            bits = _input_bits(first)
            inputs = {k: random_codes(rng, v.shape, bits[k], extreme) for k, v in first.inputs.items()}
            drawn.append(RandomCase(first.kind, first.layer, first.op, inputs, f"{first.note} inputs all {extreme}"))
        cases += drawn
    return cases


def hang_regression() -> RandomCase:
    """A depthwise 3x3 stride-2 conv over two images on which the RTL once never finished (the
    functional model and the cycle model take 3130 cycles): GEMM 4, the first of the second image
    (n_batch 7), following one with n_batch 1, did not end. The randomized co-simulation found it."""
    from sw.bundle import ConvLayer, HostOutput, UniformCodes, Weights

    rng = np.random.default_rng(0)
    c = 4
    weights = Weights(weight_bits=4, codes=rng.integers(0, 16, (c, 1, 3, 3)).astype(np.uint8),
                      zero_point=np.full(c, 7), scale=np.ones(c, np.float32))
    layer = ConvLayer(name="dw_stride2", weights=weights, bias=np.zeros(c, np.float32), bias_acc=np.zeros(c, np.int64),
                      input=UniformCodes(act_bits=4, scale=1.0, zero_point=3), group_multiplier=np.array([3]),
                      group_frac_bits=0, output=HostOutput(host_bits=16, scale=1.0, multiplier=np.full(c, 2**30),
                                                           shift=np.full(c, 30)),
                      stride=2, padding=1, groups=c)
    return RandomCase("conv strided", layer, None, {"input": rng.integers(0, 16, (2, c, 43, 1))},
                      "hang regression: depthwise 3x3 stride 2, input [2, 4, 43, 1]")


def _input_bits(case: RandomCase) -> dict[str, int]:
    layer = case.layer
    if case.op == "scores":
        return {"q": layer.q.act_bits, "k": layer.k.act_bits}
    if case.op == "values":
        return {"probs": layer.softmax.act_bits, "v": layer.v.act_bits}
    return {"input": layer.input.act_bits}


def test_random_layers_of_every_kind_equal_sw_ref_fsim_and_the_cycle_model(simulator):
    from sim.random_cosim import cosim_cases, total

    config, sim = simulator
    cases = sample_cases(config) + [hang_regression()]
    results = cosim_cases(sim, config, cases, name="test_core_verilator")
    assert len(results) == len(cases) == len(KINDS) * (LAYERS_PER_KIND + 2) + 1
    bad = [f"{r.kind} ({r.note}): {r.mismatches} of {r.elements} outputs differ from sw/ref, {r.word_mismatches} of "
           f"{r.words} words from fsim, RTL {r.cycles} cycles vs model {r.model_cycles}, {r.count_mismatches} runs "
           "with other instruction counts" for r in results if not r.ok]
    assert not bad, f"{len(bad)} of {len(results)} layers differ:\n" + "\n".join(bad)
    t = total(results)
    assert t.elements > 10_000 and t.cycles == t.model_cycles
    # the sample reaches the compiler's tilings: several jobs, single buffering, several runs of the core
    assert sum(r.parts > 1 for r in results) >= 3 and any(r.slots == 1 for r in results)
    assert sum(r.gemms > 1 for r in results) >= len(results) // 2
    assert {r.invocation_kind for r in results} >= {"linear uniform input", "linear CAG input", "linear HLUQ input",
                                                   "QK^T", "A.V uniform softmax"}


def test_random_layers_are_a_function_of_the_seed():
    from hw.core.config import PRESETS

    config = PRESETS["w8-16x16"]
    for kind in KINDS:
        a = random_case(np.random.default_rng([3, 1]), kind, config)
        b = random_case(np.random.default_rng([3, 1]), kind, config)
        assert a.note == b.note and a.kind == kind
        assert all(np.array_equal(a.inputs[k], b.inputs[k]) for k in a.inputs)


def test_the_random_layers_and_the_cosim_driver_import_without_torch():
    from torchless import run_without_torch

    code = """
import sys
sys.path.insert(0, "scripts")
import core_random_cosim, sim.random_cosim, sim.random_layers
assert "torch" not in sys.modules
print("ok")
"""
    result = run_without_torch(code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
