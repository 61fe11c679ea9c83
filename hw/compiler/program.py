"""A compiled program: every invocation's runs of the core plus one external-memory image.

    program = build_program(config, [(spec, layer), ...], bundle_identity)
    memory = program.memory()                                  # static image, zeroed tensor area
    inv = program.invocation(key)
    inv.write_inputs(memory, config.bus_bits, input=codes)
    for streams in inv.parts:
        memory = hw.fsim.run(config, streams, memory)          # or the RTL, or the board
    out = inv.read_outputs(memory, config.bus_bits)["output"]

Memory map: static regions first (weights as column vectors, constant slots, descriptor images; equal
contents are stored once), then one tensor area shared by all invocations, which run one at a time:
each places its inputs and then its outputs from the area's first word.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from hw.core.config import CoreConfig
from hw.core.isa import IsaError
from sw.bundle import Layer

from .emit import descriptor_image, descriptor_table, emit_streams
from .errors import CompileError
from .invocation import Invocation, InvocationSpec, for_core, plan_invocation


@dataclass
class Program:
    config: CoreConfig
    bundle: dict
    image: np.ndarray                 # static image bytes, static_words words
    tensor_words: int                 # size of the shared tensor area
    invocations: list[Invocation] = field(default_factory=list)

    @property
    def static_words(self) -> int:
        return self.image.size // self.config.bus_bytes

    @property
    def total_words(self) -> int:
        return self.static_words + self.tensor_words

    def memory(self) -> np.ndarray:
        """A fresh external memory: the static image, then zeros."""
        out = np.zeros(self.total_words * self.config.bus_bytes, np.uint8)
        out[:self.image.size] = self.image
        return out

    def invocation(self, key: str) -> Invocation:
        for inv in self.invocations:
            if inv.key == key:
                return inv
        raise CompileError(f"program has no invocation '{key}'")

    def run(self, key: str, inputs: dict[str, np.ndarray], runner=None) -> dict[str, np.ndarray]:
        """Run one invocation on its input codes (``runner``: hw.fsim.run by default)."""
        if runner is None:
            from hw.fsim import run as runner
        inv = self.invocation(key)
        memory = self.memory()
        inv.write_inputs(memory, self.config.bus_bits, **inputs)
        for streams in inv.parts:
            memory = runner(self.config, streams, memory)
        return inv.read_outputs(memory, self.config.bus_bits)


class _Static:
    """Static regions, each stored once per distinct content."""

    def __init__(self, config: CoreConfig):
        self.config = config
        self.chunks: list[np.ndarray] = []
        self.words = 0
        self.index: dict[str, int] = {}

    def add(self, data: np.ndarray) -> int:
        digest = hashlib.sha256(data.tobytes()).hexdigest()
        if digest not in self.index:
            self.index[digest] = self.words
            self.chunks.append(data)
            self.words += data.size // self.config.bus_bytes
        return self.index[digest]

    def image(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.uint8)


def build_program(config: CoreConfig, items: list[tuple[InvocationSpec, Layer]], bundle: dict) -> Program:
    """Plan, place and emit every invocation (duplicates, by key, compile once). An output lookup the core
    cannot hold is left to the host: that invocation writes host codes (its spec without the lookup)."""
    static = _Static(config)
    placed, seen = [], set()
    for spec, layer in items:
        spec = for_core(spec, config)
        if spec.key in seen:
            continue
        seen.add(spec.key)
        plan = plan_invocation(config, layer, spec)
        _, order = descriptor_table(plan.jobs, config.bus_bits)
        try:
            images = dict(plan.static, desc=descriptor_image(order, config.bus_bits))
        except IsaError as exc:
            raise CompileError(f"{spec.where}: {exc}") from None
        bases = {role: static.add(data) for role, data in sorted(images.items())}
        placed.append((spec, plan, bases))
    image = static.image()
    area = static.words
    program = Program(config, bundle, image, 0)
    for spec, plan, bases in placed:
        at = area
        regions = {}
        for role, region in list(plan.inputs.items()) + list(plan.outputs.items()):
            regions[role] = region.moved(at)
            at += region.words
        program.tensor_words = max(program.tensor_words, at - area)
        parts = emit_streams(config, plan.jobs, plan.slots, {**bases, **{r: g.base for r, g in regions.items()}},
                             "desc", spec.where)
        program.invocations.append(Invocation(
            spec=spec, parts=parts, inputs={regions[r].name: regions[r] for r in plan.inputs},
            outputs={regions[r].name: regions[r] for r in plan.outputs}, static=bases, macs=plan.macs,
            slots=plan.slots, gemms=len(plan.jobs)))
    return program


def compile_layer(config: CoreConfig, layer: Layer, op: str | None, shapes: dict) -> Program:
    """A program of one invocation (tests, single-layer runs)."""
    return build_program(config, [(InvocationSpec.of(layer, op, shapes), layer)], {})
