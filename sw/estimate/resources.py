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
LUTRAM_SITES = 6    # LUT4 sites of one TRELLIS_DPR16X4 (16 x 4 LUT RAM): two slices of RAM and the write slice

REFERENCE_CORE = "w4-16x16"      # the FP32 array's lanes are sized against this core's blocks
INT8_CORE = "w8-16x16"           # the INT8 baseline: its own synthesis, else the reference core's scaled
CORE_BLOCKS = ("core", "array", "pair", "pe")
STORE_LANES = (1, 2, 4, 8)   # the softmax unit's tile store beside the core (``--block store --lanes N``), optional
# role -> candidate files in order of preference (the reference core's, from before core_synth wrote names)
CORE_FILES = {
    "w4_core": ["build/core_synth_w4/core_synthesis.json", "build/core_synth_full/core_synthesis.json"],
    "w4_array": ["build/core_synth_w4/array_synthesis.json", "build/core_synth_array/array_synthesis.json"],
    "w4_pair": ["build/core_synth_w4/pair_synthesis.json", "build/core_synth_pair/pair_synthesis.json"],
    "w4_pe": ["build/core_synth_w4/pe_synthesis.json", "build/core_synth_pe/pe_synthesis.json"],
    "w8_pe": ["build/core_synth_w8-16x16/pe_synthesis.json", "build/core_synth_w8_pe/pe_synthesis.json"],
    "w8_core": ["build/core_synth_w8-16x16/core_synthesis.json"],
}
FP32_FILES = {"fp32_lane": "build/fp32/fp32_lane/synthesis.json",
              "fp32_2x2": "build/fp32/fp32_array_2x2/synthesis.json",
              "fp32_4x4": "build/fp32/fp32_array_4x4/synthesis.json"}
KEYS = ("config", "core_digest", "block", "design", "lut4", "ff", "dsp", "ebr", "lutram", "ccu2c", "fmax_mhz",
        "fmax_placed_mhz", "target_mhz", "io")


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


def core_name(spec: str | Path) -> str:
    """What reports, synthesis summaries and measured-input files call a core: a preset's name, or a JSON
    config's file stem."""
    from hw.core.config import PRESETS
    return str(spec) if str(spec) in PRESETS else Path(spec).stem


def subject_files(name: str) -> dict:
    """role -> candidate files of the subject core's synthesis (``scripts/core_synth.py --config CONFIG
    --block BLOCK --out build/core_synth_NAME``); the reference core's are its legacy files."""
    stores = {f"subject_{block}{n}": [f"build/core_synth_{name}/{block}{n}_synthesis.json"]
              for n in STORE_LANES for block in ("store", "path")}
    if name == REFERENCE_CORE:
        return {**{f"subject_{b}": CORE_FILES[f"w4_{b}"] for b in CORE_BLOCKS}, **stores}
    return {**{f"subject_{b}": [f"build/core_synth_{name}/{b}_synthesis.json"] for b in CORE_BLOCKS}, **stores}


def saved_role(role: str, name: str) -> str:
    """The key under which the snapshot keeps a role: the reference core's blocks under their ``w4_`` names,
    another core's as ``w4_BLOCK@NAME``."""
    if not role.startswith("subject_"):
        return role
    block = role.removeprefix("subject_")
    return f"w4_{block}" if name == REFERENCE_CORE else f"w4_{block}@{name}"


def _for_core(data: dict, name: str, digest: str | None) -> bool:
    """A synthesis summary counts for a core when it names it and, where it records the core's digest,
    that digest is the configuration's now (a JSON config edited after synthesis is not priced with it)."""
    return data.get("config") == name and (digest is None or data.get("core_digest", digest) == digest)


def load_resources(snapshot: Path | None = None, root: Path = ROOT, core: str = REFERENCE_CORE,
                   digest: str | None = None) -> Resources:
    """The reference roles (``w4_*``, ``w8_*``, ``fp32_*``) and the subject core's blocks
    (``subject_core``, ``subject_array``, ``subject_pair``, ``subject_pe``; ``subject_store<lanes>`` and
    ``subject_path<lanes>``, the softmax's store and store-to-unit path, where synthesized) for the core named ``core``."""
    entries, sources, missing = {}, {}, []
    saved = {}
    if snapshot is not None and snapshot.is_file():
        saved = json.loads(snapshot.read_text()).get("entries", {})
    wanted = {**CORE_FILES, **{k: [v] for k, v in FP32_FILES.items()}, **subject_files(core)}
    for role, files in wanted.items():
        subject = role.startswith("subject_")
        name = core if subject else REFERENCE_CORE if role.startswith("w4") else \
            INT8_CORE if role.startswith("w8") else None
        counts = lambda data: name is None or _for_core(data, name, digest if subject else None)  # noqa: E731
        for rel in files:
            data = _read(root / rel)
            if data is not None and counts(data):
                entries[role], sources[role] = data, rel
                break
        else:
            key = saved_role(role, core)
            if key in saved and counts(saved[key]["summary"]):
                entries[role] = saved[key]["summary"]
                sources[role] = f"{snapshot.relative_to(root) if snapshot.is_relative_to(root) else snapshot} " \
                                f"(copy of {saved[key]['source']})"
            else:
                missing.append(role)
    return Resources(entries, sources, missing)


def snapshot(resources: Resources, core: str = REFERENCE_CORE, previous: Path | None = None) -> dict:
    """What ``--measure`` keeps of the live summaries (their source paths included), merged into the
    ``previous`` snapshot so that measuring for one core keeps the other cores' entries."""
    entries = {}
    if previous is not None and previous.is_file():
        entries = json.loads(previous.read_text()).get("entries", {})
    for role, s in resources.entries.items():
        entries[saved_role(role, core)] = {"summary": s,
                                           "source": resources.sources[role].split(" (copy of ")[-1].rstrip(")")}
    return {"entries": entries}
