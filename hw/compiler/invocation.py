"""One layer invocation (a bundle layer, the op of an attention, and its input shapes), planned for a core.

    spec = InvocationSpec.of(layer, "scores", {"q": q.shape, "k": k.shape})
    plan = plan_invocation(config, layer, spec)

``plan_invocation`` lowers the layer (``lower``), tiles it double-buffered and single-buffered
(``rows``/``conv``), and takes the single-buffered plan when one job does not fit half a buffer or when it
moves fewer words to and from external memory. ``Invocation`` is the placed result a runtime uses:
its runs of the core (``parts``), and its tensor regions with pack/unpack (``write_inputs``/
``read_outputs``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from hw.core.config import CoreConfig
from hw.core.isa import LOOKUP_VALUE_BITS, IsaError
from hw.core.streams import Streams
from sw.bundle import AttentionLayer, ConvLayer, Layer, LinearLayer
from sw.ref.code_map import elementwise_code_map

from .conv import ConvSpec, plan_conv
from .errors import CompileError
from .lower import lower_conv, lower_linear, lower_scores, lower_values
from .plan import Plan, words_moved
from .regions import Region
from .rows import plan_rows
from .softmax import plan_probs

# the tensors each kind of invocation reads, in the order its shapes are given
INPUT_NAMES = {("linear", None): ("input",), ("conv2d", None): ("input",), ("attention", "scores"): ("q", "k"),
               ("attention", "values"): ("probs", "v"), ("attention", "probs"): ("q", "k")}


@dataclass(frozen=True)
class OutputLookup:
    """The elementwise host step (``step``, a ``sw.ref.graph_host`` function's name) between a layer and
    the layer ``into`` that alone reads its result, as a map from host code to ``into``'s input code
    (``code_bits`` wide): ``base`` plus the +-1 steps (threshold, down) of ``sw.ref.code_map``. A core
    with enough ``lookup_steps`` computes it on its outputs (``lookup_fits``)."""

    step: str
    into: str
    code_bits: int
    base: int
    steps: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, layer: Layer, step: str, into: Layer) -> "OutputLookup | None":
        """None where the step has no per-tensor code map (``elementwise_code_map``)."""
        code_map = elementwise_code_map(layer, step, into)
        if code_map is None:
            return None
        base, steps = code_map.steps()
        return cls(step, into.name, int(into.input.act_bits), base, steps)

    def to_json(self) -> dict:
        return {"step": self.step, "into": self.into, "code_bits": self.code_bits, "base": self.base,
                "steps": [list(s) for s in self.steps]}

    @classmethod
    def from_json(cls, data: dict) -> "OutputLookup":
        return cls(data["step"], data["into"], int(data["code_bits"]), int(data["base"]),
                   tuple((int(t), int(d)) for t, d in data["steps"]))


def lookup_fits(config: CoreConfig, lookup: OutputLookup) -> bool:
    """Whether ``config``'s output lookup holds these steps (and their thresholds fit their 16 bits)."""
    bound = 1 << (LOOKUP_VALUE_BITS - 1)
    return (0 < len(lookup.steps) <= config.lookup_steps and lookup.code_bits <= 8
            and all(-bound <= t < bound for t, _ in lookup.steps))


@dataclass(frozen=True)
class InvocationSpec:
    layer: str
    kind: str
    op: str | None
    shapes: tuple[tuple[str, tuple[int, ...]], ...]
    lookup: OutputLookup | None = None      # outputs are the next layer's codes, through this map

    @classmethod
    def of(cls, layer: Layer, op: str | None, shapes: dict, lookup: OutputLookup | None = None) -> "InvocationSpec":
        kind = layer.TAG
        if (kind, op) not in INPUT_NAMES:
            raise CompileError(f"{layer.name}: no {kind} invocation{f' with op {op}' if op else ''} "
                               f"(attention ops: scores, values, probs)")
        names = INPUT_NAMES[kind, op]
        if set(shapes) != set(names):
            raise CompileError(f"{layer.name}: a {kind} invocation takes shapes of {', '.join(names)}, got "
                               f"{', '.join(sorted(shapes))}")
        return cls(layer.name, kind, op, tuple((n, tuple(int(d) for d in shapes[n])) for n in names), lookup)

    @property
    def key(self) -> str:
        """Unique name: layer, op, input shapes and, for outputs that are the next layer's codes, the
        step and that layer."""
        shapes = " ".join(f"{n}={'x'.join(map(str, s))}" for n, s in self.shapes)
        into = f" {self.lookup.step}->{self.lookup.into}" if self.lookup else ""
        return f"{self.layer}{':' + self.op if self.op else ''} {shapes}{into}"

    @property
    def where(self) -> str:
        return f"{self.layer}{f' ({self.op})' if self.op else ''}"

    def shape(self, name: str) -> tuple:
        return dict(self.shapes)[name]


def lower(config: CoreConfig, layer: Layer, spec: InvocationSpec):
    where = spec.where
    try:
        if isinstance(layer, LinearLayer):
            return lower_linear(config, layer, spec.shape("input"), where, spec.lookup)
        if isinstance(layer, ConvLayer):
            return lower_conv(config, layer, spec.shape("input"), where, spec.lookup)
        if isinstance(layer, AttentionLayer) and spec.op == "scores":
            return lower_scores(config, layer, spec.shape("q"), spec.shape("k"), where)
        if isinstance(layer, AttentionLayer) and spec.op == "values":
            return lower_values(config, layer, spec.shape("probs"), spec.shape("v"), where)
    except IsaError as exc:
        raise CompileError(f"{where}: {exc}") from None
    raise CompileError(f"{where}: a {layer.TAG} layer does not match a {spec.kind} invocation")


def for_core(spec: "InvocationSpec", config: CoreConfig) -> "InvocationSpec":
    """``spec`` as ``config`` runs it: an output lookup the core cannot hold is left to the host, and
    the invocation writes host codes."""
    if spec.lookup is not None and not lookup_fits(config, spec.lookup):
        return dataclasses.replace(spec, lookup=None)
    return spec


def plan_invocation(config: CoreConfig, layer: Layer, spec: InvocationSpec) -> Plan:
    if spec.op == "probs":
        try:
            return plan_probs(config, layer, spec.shape("q"), spec.shape("k"), spec.where, 2)
        except CompileError:
            return plan_probs(config, layer, spec.shape("q"), spec.shape("k"), spec.where, 1)
    lowered = lower(config, layer, for_core(spec, config))
    planner = plan_conv if isinstance(lowered, ConvSpec) else plan_rows
    try:
        double = planner(config, lowered, 2)
    except CompileError:
        # A job too large for half a buffer may still fit the whole one, without overlap.
        return planner(config, lowered, 1)
    # Half buffers buy overlap with smaller jobs, which may reload more: where the whole buffers move fewer
    # words, they do (external memory is what a board is short of; overlap saves only the loads' cycles).
    single = planner(config, lowered, 1)
    return single if words_moved(single) < words_moved(double) else double


@dataclass
class Invocation:
    """A placed invocation: what a runtime writes, runs and reads (see the module docstring)."""

    spec: InvocationSpec
    parts: list[Streams]
    inputs: dict[str, Region]        # by tensor name
    outputs: dict[str, Region]
    static: dict[str, int]           # first word of each static region it loads from, by role
    macs: int
    slots: int
    gemms: int

    @property
    def key(self) -> str:
        return self.spec.key

    def input_blocks(self, bus_bits: int, **tensors: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """(first word, bytes) of each input region packed from the input tensors (codes), by tensor name;
        a region derived from a tensor (SAM ViT's relative terms from the queries) is packed from it too."""
        names = {region.source for region in self.inputs.values()}
        missing, extra = sorted(names - set(tensors)), sorted(set(tensors) - names)
        if missing or extra:
            raise CompileError(f"{self.key}: inputs are {', '.join(sorted(names))}; missing {missing}, unknown {extra}")
        return [(region.base, region.pack(np.asarray(tensors[region.source]), bus_bits))
                for region in self.inputs.values()]

    def write_inputs(self, memory: np.ndarray, bus_bits: int, **tensors: np.ndarray) -> None:
        """Pack each input tensor (codes) into its regions of ``memory``."""
        bb = bus_bits // 8
        for base, data in self.input_blocks(bus_bits, **tensors):
            memory[base * bb:base * bb + data.size] = data

    def read_outputs(self, memory: np.ndarray, bus_bits: int) -> dict[str, np.ndarray]:
        return {name: region.read(memory, bus_bits) for name, region in self.outputs.items()}

    def instruction_counts(self) -> dict[str, int]:
        return {unit: sum(len(getattr(p, unit)) for p in self.parts) for unit in ("load", "compute", "store")}
