"""Every invocation of a workload on one core: its ``CallCost``, where the compiler needed more buffer
than the configuration has, and a content-keyed cache of the result (numpy/json only).

A layer whose smallest tile does not fit the configuration's buffers is refused by the compiler in one
line; the estimate then times it on the same configuration with the data buffers doubled (up to
``MAX_GROWTH`` times) and records the refusal and the depths it used, so the report can say that this
layer needs a larger core.

Cache: an analysis is stored as JSON under a key made of the workload's identity (the bundle's manifest
SHA-256, or the shapes and the template bundle), the configuration's digest, the FP32 mapping, and the
SHA-256 of every source file the numbers depend on (the core's cycle model and parameters, the
compiler, this package's cost code): a changed core or compiler is recomputed, never read stale.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from hw.compiler.errors import CompileError
from hw.compiler.invocation import for_core
from hw.compiler.model import invocation_kind
from hw.compiler.softmax import softmax_on_chip
from hw.core.config import CoreConfig
from sw.atomic_file import write_atomic

from .costs import CallCost, call_cost
from .workload import Call, Workload

MAX_GROWTH = 2
GROWN = ("act_words", "wgt_words", "out_words")
ROOT = Path(__file__).resolve().parents[2]
CODE = ("hw/core", "hw/compiler", "hw/fsim", "hw/softmax", "sw/estimate/costs.py", "sw/estimate/fp32.py", "sw/estimate/analyze.py",
        "sw/estimate/workload.py")   # sam_vit.py is part of the ViT workloads' identity


@dataclass
class CallResult:
    key: str
    layer: str
    op: str | None
    kind: str
    part: str                        # encoder (per image) | decoder (per box)
    count: int
    cost: CallCost
    refusal: str | None = None       # the compiler's line for the configuration as given
    grown: dict | None = None        # buffer depths it was timed with instead
    read_by: str = "host"            # the host step that reads the output (workload.Call.read_by)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["cost"] = self.cost.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict) -> "CallResult":
        return cls(**{**data, "cost": CallCost.from_json(data["cost"])})


@dataclass
class Analysis:
    name: str
    config: CoreConfig
    results: list[CallResult] = field(default_factory=list)
    seconds: float = 0.0
    cache: str | None = None         # the file it was read from or written to
    from_cache: bool = False
    notes: list = field(default_factory=list)


def code_digest(root: Path = ROOT) -> str:
    h = hashlib.sha256()
    for rel in CODE:
        path = root / rel
        files = sorted(path.glob("*.py")) if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(root)).encode() + f.read_bytes())
    return h.hexdigest()[:16]


def _mapping(mapping) -> list | None:
    """What of an FP32 mapping tells its analyses apart: the lane array's shape (its config is shared)."""
    return None if mapping is None else [mapping.rows, mapping.cols]


def cache_key(identity: dict, config: CoreConfig, mapping=None) -> str:
    text = json.dumps({"workload": identity, "config": config.to_dict(), "mapping": _mapping(mapping),
                       "code": code_digest()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _cost_or_grow(config: CoreConfig, call, mapping) -> tuple[CallCost, str | None, dict | None]:
    try:
        return call_cost(config, call, mapping), None, None
    except CompileError as exc:
        refusal = str(exc)
    grown = config
    for _ in range(MAX_GROWTH):
        grown = dataclasses.replace(grown, **{name: getattr(grown, name) * 2 for name in GROWN})
        try:
            mapped = dataclasses.replace(mapping, config=grown) if mapping is not None else None
            cost = call_cost(grown, call, mapped)
        except CompileError:
            continue
        return cost, refusal, {name: getattr(grown, name) for name in GROWN}
    raise CompileError(refusal)


def on_chip_calls(calls: list[Call], config: CoreConfig) -> list[Call]:
    """The workload's calls as ``config`` runs them: on a core with the softmax path, a QK^T it takes runs
    with its softmax (``hw.compiler.softmax.softmax_on_chip``), its output codes for the A.V."""
    if not config.softmax_lanes:
        return calls
    specs = softmax_on_chip([(c.spec, c.layer) for c in calls], config)
    return [c if spec is c.spec else Call(spec, c.layer, c.count, invocation_kind(c.layer, spec.op), "codes")
            for c, (spec, _) in zip(calls, specs)]


def analyze(workload: Workload, config: CoreConfig, mapping=None) -> Analysis:
    start = time.perf_counter()
    out = Analysis(workload.name, config, notes=list(workload.notes))
    for call in on_chip_calls(workload.calls, config):
        cost, refusal, grown = _cost_or_grow(config, call, mapping)
        # an output the core's lookup turns into the next layer's codes: the host step is on chip
        read_by = "lookup" if for_core(call.spec, config).lookup else call.read_by
        out.results.append(CallResult(call.spec.key, call.spec.layer, call.spec.op, call.kind, call.part, call.count,
                                      cost, refusal, grown, read_by))
    out.seconds = time.perf_counter() - start
    return out


def cached_analysis(name: str, identity: dict, config: CoreConfig, build_workload, mapping=None,
                    cache_dir: Path | None = None, read: bool = True) -> Analysis:
    """The analysis from ``cache_dir`` when its key matches, else computed (``build_workload()`` gives the
    workload) and written there."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{name}_{cache_key(identity, config, mapping)}.json"
        if read and path.is_file():
            data = json.loads(path.read_text())
            return Analysis(data["name"], config, [CallResult.from_json(r) for r in data["results"]],
                            data["seconds"], _rel(path), True, data.get("notes", []))
    result = analyze(build_workload(), config, mapping)
    if path is not None:
        for stale in Path(cache_dir).glob(f"{name}_*.json"):
            if not re.fullmatch(rf"{re.escape(name)}_[0-9a-f]+\.json", stale.name):
                continue       # another name that starts with this one (fp32_small for fp32)
            # Only this design's older analyses: another core's, or another FP32 array's (they share a
            # config and differ in the mapping), stays valid for its own estimates, and dropping it would
            # make the next estimate of that design recompute for minutes.
            if _cached_design(stale) in (None, (config.to_dict(), _mapping(mapping))):
                stale.unlink()
        write_atomic(path, json.dumps({"name": result.name, "config": config.to_dict(), "mapping": _mapping(mapping),
                                       "identity": identity,
                                       "seconds": result.seconds, "notes": result.notes,
                                       "results": [r.to_json() for r in result.results]}, indent=0) + "\n")
        result.cache = _rel(path)
    return result


def _cached_design(path: Path) -> tuple | None:
    """The core configuration and FP32 mapping a cached analysis was made for (None when the file cannot
    be read)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get("config"), data.get("mapping")


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
