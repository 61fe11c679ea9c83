"""Verilog of a unit or of a layer's GEMM engine (``samhw generate``), with a JSON description of the
engine (parameters, ports, bus map, memories) that the co-simulation and synthesis steps read."""

from __future__ import annotations

import json

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import wiring


def unit_verilog(unit: wiring.Component, name: str | None = None) -> str:
    """Verilog of ``unit`` with its signature as the port list (needs amaranth's builtin Yosys or
    AMARANTH_USE_YOSYS=system); ``name`` defaults to the class name."""
    return verilog.convert(unit, name=name or type(unit).__name__, emit_src=False)


def parse_pes(text: str) -> tuple[int, int]:
    """'4x4' -> (4, 4): PE rows x PE columns."""
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--pes must look like RxC (e.g. 4x4), got '{text}'") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"--pes needs at least one PE row and column, got '{text}'")
    return rows, cols


def port_list(component: wiring.Component) -> list[dict]:
    ports = [{"name": "clk", "direction": "in", "width": 1}, {"name": "rst", "direction": "in", "width": 1}]
    for name, member in component.signature.members.items():
        ports.append({"name": name, "direction": "in" if member.flow == wiring.In else "out",
                      "width": Shape.cast(member.shape).width})
    return ports


def generate_engine(layer, out_dir, op: str | None = None, pes=(4, 4), max_rows: int = 64,
                    keys: int | None = None, dim: int | None = None) -> dict:
    """Write ``<name>.v`` and ``design.json`` for ``layer``'s GEMM engine into ``out_dir``; returns the
    design description (what design.json holds)."""
    from pathlib import Path

    from .engine import GemmEngine
    from .engine.layers import engine_config

    config = engine_config(layer, op, pes, max_rows, keys, dim)
    engine = GemmEngine(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    verilog_path = out / f"{config.name}.v"
    verilog_path.write_text(unit_verilog(engine, config.name))
    design = {"top": config.name, "verilog": verilog_path.name, "ports": port_list(engine), **config.describe()}
    design["ebr_estimate"] = sum(m["ebr_estimate"] for m in design["memories"])
    (out / "design.json").write_text(json.dumps(design, indent=1, default=int) + "\n")
    return design
