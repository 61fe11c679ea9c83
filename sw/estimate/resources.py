"""Measured FPGA resources the estimate uses, read from the synthesis outputs the project writes (never
typed): the core (``scripts/core_synth.py``: whole core and its blocks) and the FP32 lane and lane arrays
(``bitstreams/fp32_lane.py``). numpy/json only.

``build/`` is not tracked, so ``samhw estimate --measure`` copies the summaries it used into the
inputs folder (``snapshot``); ``load_resources`` prefers the live files and falls back to that copy,
and says which file every number came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEVICE_85F = {"part": "LFE5U-85F", "lut4": 83640, "ff": 83640, "dsp": 156, "ebr": 208}

# (role, candidate files in order of preference, config the file must be for)
CORE_FILES = {
    "w4_core": ["build/core_synth_w4/core_synthesis.json", "build/core_synth_full/core_synthesis.json"],
    "w4_array": ["build/core_synth_w4/array_synthesis.json", "build/core_synth_array/array_synthesis.json"],
    "w4_pair": ["build/core_synth_w4/pair_synthesis.json", "build/core_synth_pair/pair_synthesis.json"],
    "w4_pe": ["build/core_synth_w4/pe_synthesis.json", "build/core_synth_pe/pe_synthesis.json"],
    "w8_pe": ["build/core_synth_w8_pe/pe_synthesis.json"],
}
FP32_FILES = {"fp32_lane": "build/fp32/fp32_lane/synthesis.json",
              "fp32_2x2": "build/fp32/fp32_array_2x2/synthesis.json",
              "fp32_4x4": "build/fp32/fp32_array_4x4/synthesis.json"}
KEYS = ("config", "block", "design", "lut4", "ff", "dsp", "ebr", "lutram", "ccu2c", "fmax_mhz", "fmax_placed_mhz",
        "target_mhz", "io")


@dataclass
class Resources:
    entries: dict                 # role -> summary dict (KEYS)
    sources: dict                 # role -> file it was read from
    missing: list = field(default_factory=list)

    def get(self, role: str) -> dict | None:
        return self.entries.get(role)


def rel(path) -> str:
    """``path`` relative to the repository when it is inside it (reports name files that way)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return {k: data[k] for k in KEYS if k in data}


def load_resources(snapshot: Path | None = None, root: Path = ROOT) -> Resources:
    entries, sources, missing = {}, {}, []
    saved = {}
    if snapshot is not None and snapshot.is_file():
        saved = json.loads(snapshot.read_text()).get("entries", {})
    wanted = {**CORE_FILES, **{k: [v] for k, v in FP32_FILES.items()}}
    for role, files in wanted.items():
        for rel in files:
            data = _read(root / rel)
            if data is not None and (not role.startswith("w4") or data.get("config") == "w4-16x16"):
                entries[role], sources[role] = data, rel
                break
        else:
            if role in saved:
                entries[role] = saved[role]["summary"]
                sources[role] = f"{snapshot.relative_to(root) if snapshot.is_relative_to(root) else snapshot} " \
                                f"(copy of {saved[role]['source']})"
            else:
                missing.append(role)
    return Resources(entries, sources, missing)


def snapshot(resources: Resources) -> dict:
    """What ``--measure`` keeps of the live summaries (their source paths included)."""
    return {"entries": {role: {"summary": s, "source": resources.sources[role].split(" (copy of ")[-1].rstrip(")")}
                        for role, s in resources.entries.items()}}
