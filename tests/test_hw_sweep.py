"""The board sweep's point names and its report, regenerated from the committed measured records
(scripts/hw_sweep.py; the builds themselves take hours and never run here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _sweep():
    spec = importlib.util.spec_from_file_location("hw_sweep", ROOT / "scripts" / "hw_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_point_names_carry_size_formats_lane_ram_y_and_memory():
    sweep = _sweep()
    plain = sweep.point_config("w4-8x8-full")
    assert (plain.rows, plain.cols, plain.lane_ram, plain.y_accumulators) == (8, 8, "block", True)
    assert sweep.point_mem_words("w4-8x8-full") is None
    cfg = sweep.point_config("w4-16x16-uniform-lutram-xonly-mem1024@30")
    assert (cfg.rows, cfg.cols, cfg.formats, cfg.lane_ram, cfg.y_accumulators) == (
        16, 16, ("uniform", "agq"), "lut", False)
    assert sweep.point_mem_words("w4-16x16-uniform-lutram-xonly-mem1024@30") == 1024
    assert sweep.point_clock("w4-16x16-uniform-lutram-xonly-mem1024@30", 50) == 30
    assert sweep.point_config("w4-64x4-noshift").formats == ("uniform", "cag")
    from hw.core.params import CoreParams

    assert not CoreParams(sweep.point_config("w4-64x4-noshift")).has_shift_modes
    assert CoreParams(sweep.point_config("w4-64x4-uniform")).has_shift_modes
    for bad in ("w4-8x8-full-fast", "w4-8x8-full-mem1k", "w6-8x8-full", "w4-8x8"):
        with pytest.raises(SystemExit, match="a point is"):
            sweep.point_config(bad)


def test_the_report_is_regenerated_from_the_committed_records(tmp_path):
    sweep = _sweep()
    points = json.loads((ROOT / "docs" / "hw_sweep.json").read_text())
    out = tmp_path / "hw_sweep.md"
    sweep.report(points, out, "python scripts/hw_sweep.py")
    text = out.read_text()
    measured = [name for name, p in points.items() if "failed" not in p]
    assert f"{len(measured)} measured points" in text and len(measured) >= 6
    for name in measured:
        p = points[name]
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"| {p['resources']['lut4']} (" in row and f"| {p['clock']['fmax_mhz']} |" in row
    assert (tmp_path / "hw_sweep.png").stat().st_size > 10_000


@pytest.mark.parametrize("folder, core", [("ulx3s-85f-w4-4x4", "w4-4x4.json"),
                                          ("ulx3s-85f-w4-64x4-noshift", "w4-64x4-noshift.json")])
def test_committed_bitstreams_match_their_records_and_core_configs(folder, core):
    import hashlib

    from hw.core.config import load_core_config

    path = ROOT / "bitstreams" / folder
    record = json.loads((path / "build.json").read_text())
    bit = (path / "top.bit").read_bytes()
    assert hashlib.sha256(bit).hexdigest() == record["bitstream_sha256"] and len(bit) == record["bitstream_bytes"]
    assert record["complete"] and record["timing_met"] and record["clock"]["fmax_mhz"] >= record["pll_mhz"]
    config = load_core_config(ROOT / "bitstreams" / "cores" / core)
    assert record["design"]["core_digest"] == config.digest
    assert f"Build key `{record['key']}`" in (path / "report.md").read_text()
    # the sweep's records hold the same build
    assert any(p.get("key") == record["key"] for p in json.loads((ROOT / "docs" / "hw_sweep.json").read_text()).values())


def test_a_committed_bitstream_has_256_four_bit_macs_per_cycle():
    record = json.loads((ROOT / "bitstreams" / "ulx3s-85f-w4-64x4-noshift" / "build.json").read_text())
    core = record["design"]["core"]
    assert core["rows"] * core["cols"] >= 256 and core["act_bits"] == core["weight_bits"] == 4
    assert record["timing_met"]
