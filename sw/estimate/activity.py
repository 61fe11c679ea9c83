"""Measured switching activity (numpy/json only): the toggle sums ``sim.core_activity`` and
``sim.fp32_activity`` wrote, as toggles per bit per event.

The core was simulated with a small PE array (the JSON names it) on real slices of one layer of each
kind; its rates are applied to the full design's resource counts by block, each block per the event
that drives it: the PE array per issued term (all PEs busy), the lanes per lane-busy cycle (combining,
requantizing or writing an output row), the rest of the core per cycle. That scaling is the
assumption: a PE, a lane and the control toggle on the 16 x 16 core as they did on the small one for
the same layer kind. An invocation whose kind was not simulated takes the rates of the simulated kinds
of its class (linear, conv, QK^T, A.V), or of all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CLASSES = ("linear", "conv", "QK^T", "A.V")


@dataclass(frozen=True)
class Rates:
    """Toggles per bit per event: (register, comb) for each block."""

    array: tuple[float, float]
    lanes: tuple[float, float]
    core: tuple[float, float]

    @staticmethod
    def mean(items: list["Rates"]) -> "Rates":
        def avg(name):
            vals = [getattr(r, name) for r in items]
            return tuple(sum(v[i] for v in vals) / len(vals) for i in range(2))
        return Rates(avg("array"), avg("lanes"), avg("core"))


def class_of(kind: str) -> str:
    kind = kind.replace("decoder ", "")
    for c in CLASSES:
        if kind.startswith(c):
            return c
    return kind.split(" ")[0]


def _rate(block: dict, kind: str, events: float) -> float:
    b = block[kind]
    return b["toggles"] / (b["bits"] * events) if b["bits"] and events else 0.0


@dataclass
class CoreActivity:
    path: str
    data: dict
    by_kind: dict          # kind -> Rates

    @classmethod
    def load(cls, path: Path) -> "CoreActivity":
        data = json.loads(Path(path).read_text())
        by_kind: dict = {}
        for case in data["cases"]:
            blocks = case["blocks"]
            lane_events = case.get("lane_cycles", 0) + case.get("out_words", 0)
            rates = Rates(
                array=tuple(_rate(blocks["array"], k, case["terms"]) for k in ("register", "comb")),
                lanes=tuple(_rate(blocks["lanes"], k, lane_events or case["cycles"]) for k in ("register", "comb")),
                core=tuple(_rate(blocks["core"], k, case["cycles"]) for k in ("register", "comb")))
            by_kind.setdefault(case["kind"], []).append(rates)
        return cls(str(path), data, {k: Rates.mean(v) for k, v in by_kind.items()})

    def rates(self, kind: str) -> tuple[Rates, str]:
        """The rates for an invocation kind, and which measured kinds they come from."""
        if kind in self.by_kind:
            return self.by_kind[kind], kind
        same = [k for k in self.by_kind if class_of(k) == class_of(kind)]
        if same:
            return Rates.mean([self.by_kind[k] for k in same]), " / ".join(same)
        return Rates.mean(list(self.by_kind.values())), "all measured kinds"

    @property
    def pes(self) -> str:
        c = self.data["config"]
        return f"{c['rows']}x{c['cols']}"


@dataclass
class LaneActivity:
    """One FP32 lane: toggles per bit per issued term (register, comb)."""

    path: str
    data: dict
    rates: tuple[float, float]

    @classmethod
    def load(cls, path: Path) -> "LaneActivity":
        data = json.loads(Path(path).read_text())
        lane = data["lane"]
        return cls(str(path), data, tuple(_rate(lane, k, data["terms"]) for k in ("register", "comb")))
