"""Verilog of the programmable core (``samhw generate``) or of any unit, and the JSON that describes a
generated core: its configuration and digest, buffer sizes, formats and port list.

    OUT/core.v      the core, top module ``Core`` (ports: docs/core.md, hw/core/core.py)
    OUT/core.json   top, Verilog file, ``digest``, the whole ``config`` (CoreConfig fields, so
                    ``config`` alone is a core config file), a summary of the fields a board designer
                    reads first, and the ports

Both files are replaced atomically, the JSON last, so a ``core.json`` always describes the ``core.v``
beside it. ``bitstreams.ecp5_smoke`` synthesizes the same Verilog.
"""

from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import wiring

from sw.atomic_file import write_atomic

CORE_TOP = "Core"
CORE_VERILOG = "core.v"
CORE_JSON = "core.json"


def unit_verilog(unit: wiring.Component, name: str | None = None) -> str:
    """Verilog of ``unit`` with its signature as the port list (needs amaranth's builtin Yosys or
    AMARANTH_USE_YOSYS=system); ``name`` defaults to the class name."""
    return verilog.convert(unit, name=name or type(unit).__name__, emit_src=False)


def parse_pes(text: str) -> tuple[int, int]:
    """'4x4' -> (4, 4): rows x columns of an array."""
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"an array size looks like RxC (e.g. 4x4), got '{text}'") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"an array needs at least one row and column, got '{text}'")
    return rows, cols


def port_list(component: wiring.Component) -> list[dict]:
    ports = [{"name": "clk", "direction": "in", "width": 1}, {"name": "rst", "direction": "in", "width": 1}]
    for name, member in component.signature.members.items():
        ports.append({"name": name, "direction": "in" if member.flow == wiring.In else "out",
                      "width": Shape.cast(member.shape).width})
    return ports


def core_design(config, core: wiring.Component | None = None) -> dict:
    """What ``core.json`` holds for ``config`` (``core``: the elaboratable, built when not given)."""
    from hw.core.core import Core

    core = core if core is not None else Core(config)
    ports = port_list(core)
    return {
        "top": CORE_TOP, "verilog": CORE_VERILOG, "digest": config.digest,
        "summary": {"pes": f"{config.rows}x{config.cols}", "rows": config.rows, "cols": config.cols,
                    "act_bits": config.act_bits, "weight_bits": config.weight_bits, "bus_bits": config.bus_bits,
                    "buffer_words": {name: getattr(config, f"{name}_words")
                                     for name in ("act", "wgt", "out", "param", "prog")},
                    "formats": list(config.formats), "pins": sum(p["width"] for p in ports)},
        "config": config.to_dict(),
        "ports": ports,
    }


def core_verilog(config) -> tuple[str, dict]:
    """The core's Verilog (top ``Core``) and its description. Refuses, with ``CoreConfigError`` in one
    line, a configuration the generator does not build (``hw.core.params``)."""
    from hw.core.core import Core
    from hw.core.params import CoreParams

    CoreParams(config)
    core = Core(config)
    return unit_verilog(core, CORE_TOP), core_design(config, core)


def generate_core(config, out_dir) -> dict:
    """Write ``core.v`` and ``core.json`` for ``config`` into ``out_dir``; returns the description."""
    text, design = core_verilog(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / CORE_VERILOG, text)
    write_atomic(out / CORE_JSON, json.dumps(design, indent=1) + "\n")
    return design
