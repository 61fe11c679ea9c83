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
