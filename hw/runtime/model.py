"""The whole model on the accelerator: every quantized layer on a backend, every host step in ``sw/ref``.

    program = load_program("programs/ahcptq_w4a4", bundle=bundle)     # or compile_bundle(bundle, config)
    with FsimBackend() as backend:
        result = run_model(bundle, program, backend, image, boxes)   # image [1, 3, S, S], boxes [N, 4] input pixels
    result.logits, result.iou, result.layers, result.mismatches

``Accelerator`` is an ``sw.ref.steps.IntegerLayers``: ``sw/ref/run.py``'s ``encode_image`` and
``decode_masks`` run the model graph (stem, LayerNorms, GELU, softmax, residuals, the decoder's
upscaling and heads, all in float64 exactly as the reference defines them) and hand it each integer
layer; it finds the layer's invocation in the compiled program, runs it on the backend and returns the
backend's output codes. Where the host reads a layer's output only through a GELU or ReLU into the next
layer (``IntegerLayers.gemm_into``) and the program holds that invocation with an output lookup, the
backend returns the next layer's codes itself; otherwise the host applies the step to its host codes. With ``check`` (default) it also computes ``sw/ref``'s output of the same input
codes and counts the codes that differ, per layer. When every layer's output equals the reference, the
run *is* the reference run (the host steps between layers are the same code on the same values), so the
masks are identical to ``sw/ref``'s; ``reference_model`` runs the reference alone to compare anyway.

A program holds the invocations of one image and one box (``hw/compiler/model.py``). The decoder runs
the boxes of one ``decode_masks`` call as a batch on the host; each of its integer layers then gets a
tensor of N boxes, which the accelerator runs as N invocations of the one-box program (the first axis
is the box) and concatenates. ``offload`` (a predicate on layer name and op) keeps some layers on
``sw/ref`` instead (tests run one block on a slow backend); they appear in the table as ``sw/ref``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from hw.compiler.invocation import InvocationSpec, OutputLookup
from hw.compiler.model import invocation_kind, reference_outputs
from sw.errors import SamhwError
from sw.ref.log_softmax import LogSoftmaxLayers
from sw.ref.run import decode_masks, encode_image
from sw.ref.steps import IntegerLayers, elementwise_codes

from .backend import Backend

ENCODER_PREFIX = "image_encoder."
DEFAULT_BOX_BATCH = 4   # boxes per decode_masks call (the decoder copies the embedding once per box)


class ProgramMismatch(SamhwError):
    """The model asks for an invocation the program does not hold (another bundle, other shapes)."""


@dataclass
class LayerRecord:
    """One integer layer (a linear or conv, or one stage of an attention) over a model run."""

    index: int
    layer: str
    op: str | None
    kind: str
    where: str                    # the backend's name, or "sw/ref" (not offloaded), or "host"
    calls: int = 0                # times the model called it (decode_masks calls for decoder layers)
    runs: int = 0                 # program invocations run on the backend (one per box in the decoder)
    macs: int = 0
    cycles: int = 0
    host_seconds: float = 0.0     # host steps run just before it (summed over calls)
    backend_seconds: float = 0.0
    check_seconds: float = 0.0
    elements: int = 0             # output codes compared with sw/ref
    mismatches: int = 0
    words: int | None = None      # backends that compare themselves (verilator): output words vs fsim
    word_mismatches: int | None = None
    model_cycles: int | None = None

    @property
    def name(self) -> str:
        return f"{self.layer}{':' + self.op if self.op else ''}"

    def utilization(self, pes: int) -> float:
        return self.macs / (pes * self.cycles) if self.cycles else 0.0

    def _add_optional(self, field_name: str, value) -> None:
        if value is not None:
            setattr(self, field_name, (getattr(self, field_name) or 0) + value)


@dataclass
class ModelRun:
    """A whole-model run: the decoder's outputs, the embedding, and one record per integer layer."""

    backend: str
    embedding: np.ndarray
    logits: np.ndarray            # [N, 1, H, W] low-res mask logits, as sw/ref's decode_masks
    iou: np.ndarray               # [N]
    layers: list[LayerRecord]
    host_tail: dict[str, float]   # host steps after the last integer layer of the encoder / decoder
    seconds: float
    pes: int

    def offloaded(self) -> list[LayerRecord]:
        return [r for r in self.layers if r.where not in ("sw/ref", "host")]

    @property
    def runs(self) -> int:
        return sum(r.runs for r in self.offloaded())

    @property
    def cycles(self) -> int:
        return sum(r.cycles for r in self.offloaded())

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.offloaded())

    @property
    def elements(self) -> int:
        return sum(r.elements for r in self.offloaded())

    @property
    def mismatches(self) -> int:
        return sum(r.mismatches for r in self.offloaded())

    @property
    def word_mismatches(self) -> int | None:
        words = [r.word_mismatches for r in self.offloaded() if r.word_mismatches is not None]
        return sum(words) if words else None

    @property
    def words(self) -> int | None:
        words = [r.words for r in self.offloaded() if r.words is not None]
        return sum(words) if words else None

    @property
    def cycle_differences(self) -> list[LayerRecord]:
        """Layers whose backend cycles differ from the cycle model's (backends that report both)."""
        return [r for r in self.offloaded() if r.model_cycles is not None and r.model_cycles != r.cycles]

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.word_mismatches and not self.cycle_differences

    def cycles_of(self, part: str) -> int:
        """Cycles of the encoder (``part="encoder"``) or of the prompt-dependent layers (``"decoder"``)."""
        enc = part == "encoder"
        return sum(r.cycles for r in self.offloaded() if r.layer.startswith(ENCODER_PREFIX) == enc)

    @property
    def host_seconds(self) -> float:
        return sum(r.host_seconds for r in self.layers) + sum(self.host_tail.values())

    @property
    def backend_seconds(self) -> float:
        return sum(r.backend_seconds for r in self.layers)


class Accelerator(IntegerLayers):
    """Integer layers on a backend, checked against sw/ref (see the module docstring)."""

    def __init__(self, program, backend: Backend, check: bool = True,
                 offload: Callable[[str, str | None], bool] | None = None,
                 progress: Callable[[str], None] | None = None):
        self.program, self.backend, self.check = program, backend, check
        self.offload = offload or (lambda layer, op: True)
        self.progress = progress
        self.by_key = {inv.key: inv for inv in program.invocations}
        self.on_chip_softmax = softmax_layers(program)
        self.records: dict[tuple[str, str | None], LayerRecord] = {}
        self.host_tail: dict[str, float] = {}
        self.lookups: dict[tuple[str, str, str], OutputLookup | None] = {}
        self._mark = time.perf_counter()

    # ---- IntegerLayers ----------------------------------------------------------------------
    def gemm(self, layer, codes):
        return self._call(layer, None, {"input": codes}, lambda: super(Accelerator, self).gemm(layer, codes))

    def gemm_into(self, layer, codes, step, into):
        """On the backend with its output lookup where the program has one for this layer, else host codes
        from the backend and the step on the host."""
        names = (layer.name, step, into.name)
        if names not in self.lookups:
            self.lookups[names] = OutputLookup.of(layer, step, into)
        lookup = self.lookups[names]
        if lookup is None or not self.offload(layer.name, None) or not self._has(layer, None, {"input": codes}, lookup):
            return elementwise_codes(layer, self.gemm(layer, codes), step, into)
        return self._call(layer, None, {"input": codes},
                          lambda: super(Accelerator, self).gemm_into(layer, codes, step, into), lookup, (step, into))

    def scores(self, layer, q, k):
        return self._call(layer, "scores", {"q": q, "k": k}, lambda: super(Accelerator, self).scores(layer, q, k))

    def values(self, layer, probs, v):
        return self._call(layer, "values", {"probs": probs, "v": v},
                          lambda: super(Accelerator, self).values(layer, probs, v))

    def attention_probabilities(self, layer, q, k):
        """The program's QK^T with the softmax on chip where it has one for this layer, else QK^T on the
        backend and the softmax on the host."""
        if layer.name not in self.on_chip_softmax:
            return super().attention_probabilities(layer, q, k)
        tensors = {"q": q, "k": k}
        return self._call(layer, "probs", tensors, lambda: reference_outputs(layer, "probs", tensors)["probs"])

    # ---- bookkeeping ------------------------------------------------------------------------
    def host_step(self, label: str) -> None:
        """Book the host time since the last integer layer as ``label`` (the tail of a model part)."""
        now = time.perf_counter()
        self.host_tail[label] = self.host_tail.get(label, 0.0) + now - self._mark
        self._mark = now

    def _record(self, layer, op: str | None, where: str) -> LayerRecord:
        key = (layer.name, op)
        if key not in self.records:
            self.records[key] = LayerRecord(len(self.records), layer.name, op, invocation_kind(layer, op), where)
        return self.records[key]

    def _has(self, layer, op: str | None, tensors: dict[str, np.ndarray], lookup: OutputLookup) -> bool:
        """Whether the program runs these tensors with this output lookup."""
        try:
            return self._plan(layer, op, tensors, lookup) is not None
        except ProgramMismatch:
            return False

    def _plan(self, layer, op: str | None, tensors: dict[str, np.ndarray], lookup: OutputLookup | None = None):
        """(invocation, n): the program invocation these tensors run on, n times along their first axis."""
        spec = InvocationSpec.of(layer, op, {k: np.shape(v) for k, v in tensors.items()}, lookup)
        inv = self.by_key.get(spec.key)
        if inv is not None:
            return inv, 1
        shapes = dict(spec.shapes)
        for cand in self.program.invocations:
            if cand.spec.layer != spec.layer or cand.spec.op != op or cand.spec.lookup != lookup:
                continue
            theirs = dict(cand.spec.shapes)
            counts = {shapes[n][0] // s[0] if s and s[0] and shapes[n][0] % s[0] == 0 else 0 for n, s in theirs.items()}
            if len(counts) == 1 and 0 not in counts and all(shapes[n][1:] == s[1:] for n, s in theirs.items()):
                return cand, counts.pop()
        have = [c.key for c in self.program.invocations if c.spec.layer == spec.layer and c.spec.op == op]
        raise ProgramMismatch(f"the program has no invocation for {spec.key}"
                              + (f" (it has {have[0]})" if have else " (the layer is not in the program)")
                              + ": it was compiled from another bundle or for another input size")

    def _call(self, layer, op: str | None, tensors: dict[str, np.ndarray], reference: Callable[[], np.ndarray],
              lookup: OutputLookup | None = None, feeds: tuple | None = None):
        start = time.perf_counter()
        host = start - self._mark
        if not self.offload(layer.name, op):
            record = self._record(layer, op, "sw/ref")
            out = reference()
            record.calls += 1
            record.host_seconds += host
            record.backend_seconds += time.perf_counter() - start
            self._mark = time.perf_counter()
            return out
        record = self._record(layer, op, self.backend.name)
        inv, n = self._plan(layer, op, tensors, lookup)
        tensors = {k: np.asarray(v) for k, v in tensors.items()}
        chunks: list[dict[str, np.ndarray]] = []
        size = {k: v.shape[0] // n for k, v in tensors.items()}
        for i in range(n):
            part = {k: v[i * size[k]:(i + 1) * size[k]] for k, v in tensors.items()} if n > 1 else tensors
            outcome = self.backend.run(inv, part)
            chunks.append(outcome.outputs)
            record.runs += 1
            record.macs += inv.macs
            record.cycles += outcome.cycles
            record.backend_seconds += outcome.seconds
            record._add_optional("words", outcome.words)
            record._add_optional("word_mismatches", outcome.word_mismatches)
            record._add_optional("model_cycles", outcome.model_cycles)
            if self.progress:
                self.progress(record.name)
        outputs = {k: np.concatenate([c[k] for c in chunks]) if n > 1 else chunks[0][k] for k in chunks[0]}
        record.calls += 1
        record.host_seconds += host
        if self.check:
            checked = time.perf_counter()
            want = reference_outputs(layer, op, tensors, feeds)
            for k, v in want.items():
                record.elements += v.size
                record.mismatches += int(np.count_nonzero(outputs[k] != v)) if outputs[k].shape == v.shape else v.size
            record.check_seconds += time.perf_counter() - checked
        self._mark = time.perf_counter()
        (value,) = outputs.values()
        return value


def backend_runs(program, boxes: int, offload: Callable[[str, str | None], bool] | None = None) -> int:
    """How many invocation runs a model run on ``boxes`` boxes makes (the progress bar's total)."""
    offload = offload or (lambda layer, op: True)
    return sum((1 if inv.spec.layer.startswith(ENCODER_PREFIX) else boxes)
               for inv in program.invocations if offload(inv.spec.layer, inv.spec.op))


def _box_chunks(boxes: np.ndarray, box_batch: int):
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return [boxes[i:i + box_batch] for i in range(0, len(boxes), box_batch)] or [boxes]


def run_model(bundle, program, backend: Backend, image: np.ndarray, boxes: np.ndarray, *, check: bool = True,
              offload: Callable[[str, str | None], bool] | None = None,
              progress: Callable[[str], None] | None = None, box_batch: int = DEFAULT_BOX_BATCH,
              opened: bool = False) -> ModelRun:
    """``encode_image`` and ``decode_masks`` (``box_batch`` boxes per call) of ``sw/ref/run.py`` with every
    integer layer on ``backend``. ``opened``: the backend already holds ``program`` (several images)."""
    start = time.perf_counter()
    if not opened:
        backend.open(program)
    acc = Accelerator(program, backend, check, offload, progress)
    embedding = encode_image(bundle, image, acc)
    acc.host_step("encoder tail (neck LayerNorm)")
    logits, ious = [], []
    for chunk in _box_chunks(boxes, box_batch):
        masks, iou = decode_masks(bundle, embedding, chunk, acc)
        acc.host_step("decoder tail (upscaling, hypernetwork, IoU head)")
        logits.append(masks)
        ious.append(iou)
    return ModelRun(backend.name, embedding, np.concatenate(logits), np.concatenate(ious), list(acc.records.values()),
                    acc.host_tail, time.perf_counter() - start, program.config.pes)


def softmax_layers(program) -> set[str]:
    """The attention layers whose softmax ``program`` computes on chip (its ``probs`` invocations)."""
    return {inv.spec.layer for inv in program.invocations if inv.spec.op == "probs"}


class ProgramReference(LogSoftmaxLayers):
    """sw/ref as a program computes it: the host's softmax, except where the program has the softmax on
    chip, whose integer definition (``sw.ref.log_softmax``) it then uses."""

    def __init__(self, program):
        super().__init__()
        self.on_chip_softmax = softmax_layers(program)

    def probabilities(self, layer, scores, q):
        if layer.name in self.on_chip_softmax:
            return super().probabilities(layer, scores, q)
        return IntegerLayers.probabilities(self, layer, scores, q)


def reference_model(bundle, image: np.ndarray, boxes: np.ndarray, box_batch: int = DEFAULT_BOX_BATCH,
                    program=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sw/ref alone, the same calls as ``run_model``: (embedding, logits, iou); with ``program``, its on-chip
    softmax as the integer definition (``ProgramReference``)."""
    layers = ProgramReference(program) if program is not None else None
    embedding = encode_image(bundle, image, layers)
    parts = [decode_masks(bundle, embedding, chunk, layers) for chunk in _box_chunks(boxes, box_batch)]
    return embedding, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

