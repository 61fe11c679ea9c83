"""Boards the estimate runs on: the device's resources, the external memory's bandwidth (the roofline's
slope) and where the clock comes from (numpy/json only)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from .resources import DEVICE_85F, ROOT
from .sources import ULX3S, ULX3S_SDRAM_BYTES_PER_S


@dataclass(frozen=True)
class Board:
    name: str
    device: dict
    memory_bytes_per_s: float | None    # None: only the core's own bus (the cycle model's memory)
    memory_source: str


BOARDS = {
    "ulx3s-85f": Board("ulx3s-85f", DEVICE_85F, ULX3S_SDRAM_BYTES_PER_S, ULX3S),
    "ideal": Board("ideal", DEVICE_85F, None, "the cycle model's memory only: one bus word per cycle, "
                   "mem_read_latency / mem_write_latency (hw/core/simmem.py)"),
}


def flow_target_mhz() -> float:
    """The nextpnr target every ECP5 build of this project uses (bitstreams.ecp5_smoke --freq default)."""
    from bitstreams.ecp5_smoke import add_flow_arguments

    parser = argparse.ArgumentParser()
    add_flow_arguments(parser)
    return float(parser.get_default("freq"))


def board_report(board: str) -> Path:
    return ROOT / "build" / board / "synthesis.json"


def core_clock(board: str, given: float | None, report: Path | None = None) -> tuple[float, str]:
    """(MHz, where it comes from): --clock-mhz, else the board build's post-route Fmax, else the flow's
    target frequency as a stated assumption."""
    if given is not None:
        return float(given), "given with --clock-mhz"
    report = report or board_report(board)
    if report.is_file():
        data = json.loads(report.read_text())
        if data.get("fmax_mhz"):
            return float(data["fmax_mhz"]), f"post-route Fmax of the board build ({report.relative_to(ROOT)})"
    target = flow_target_mhz()
    return target, (f"assumed: the {target:g} MHz target of the project's ECP5 flow (bitstreams/ecp5_smoke.py "
                    f"--freq); no board build report ({report.relative_to(ROOT) if report.is_relative_to(ROOT) else report}) "
                    "exists yet, so no post-route Fmax of this core is known")
