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


def board_builds(board: str, root: Path = ROOT) -> list[tuple[Path, dict]]:
    """The committed bitstreams' build records for ``board`` (bitstreams/<board>-*/build.json)."""
    out = []
    for path in sorted((root / "bitstreams").glob(f"{board}-*/build.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("complete") and record.get("clock", {}).get("fmax_mhz"):
            out.append((path, record))
    return out


def core_clock(board: str, given: float | None, digest: str | None = None,
               root: Path = ROOT) -> tuple[float, str]:
    """(MHz, where it comes from): --clock-mhz, else the post-route Fmax of a committed bitstream of this
    core (by config digest), else the flow's target frequency as a stated assumption, next to the Fmax of
    the largest core that was built for the board."""
    if given is not None:
        return float(given), "given with --clock-mhz"
    builds = board_builds(board, root)
    own = own_build(builds, digest)
    if own is not None:
        path, record = own
        return float(record["clock"]["fmax_mhz"]), f"post-route Fmax of this core's board build ({path.relative_to(root)})"
    target = flow_target_mhz()
    text = (f"assumed: the {target:g} MHz target of the project's ECP5 flow (bitstreams/ecp5_smoke.py --freq); no "
            f"{board} bitstream of this core exists")
    largest = largest_build(builds, root)
    if largest:
        text += (f" (the largest core built for it, {largest['pes_label']} PEs, reaches {largest['fmax_mhz']:g} MHz "
                 f"post-route: {largest['path']}; docs/board.md: cores with 8 or more PE columns have not routed on "
                 "the LFE5U-85F)")
    return target, text


def own_build(builds: list[tuple[Path, dict]], digest: str | None) -> tuple[Path, dict] | None:
    """Of ``board_builds``' records, the one of the core with config digest ``digest``."""
    for path, record in builds:
        if digest is not None and record.get("design", {}).get("core_digest") == digest:
            return path, record
    return None


def largest_build(builds: list[tuple[Path, dict]], root: Path = ROOT) -> dict | None:
    """Of ``board_builds``' records, the one with the most PEs: its array, post-route Fmax and record path."""
    if not builds:
        return None

    def pes(item):
        core = item[1]["design"]["core"]
        return core["rows"] * core["cols"]

    path, record = max(builds, key=pes)
    core = record["design"]["core"]
    return {"pes_label": f"{core['rows']}x{core['cols']}", "pes": core["rows"] * core["cols"],
            "fmax_mhz": float(record["clock"]["fmax_mhz"]), "path": str(path.relative_to(root))}
