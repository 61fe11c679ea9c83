"""What one image and one box ask of the core: every quantized layer invocation of a model with how
many times it runs, numpy only.

A bundle's workload comes from running its own graph (``hw.compiler.model.record_invocations``: one
image through the encoder, one box through the decoder) with a recorder that also counts repeats;
``Call.part`` says whether an invocation belongs to the image (``encoder``: once per image) or to the
box (``decoder``: once per box), ``Call.read_by`` which host step reads its output
(``hw.compiler.model.output_reader``). ``sam_vit.py`` builds the same list for the official SAM ViT-B
shapes without a bundle.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hw.compiler.invocation import InvocationSpec, OutputLookup
from hw.compiler.model import Recorder, bundle_identity, invocation_kind, output_reader, record_invocations
from sw.atomic_file import write_atomic
from sw.bundle import Bundle, Layer

DECODER_PREFIX = "mask_decoder"


@dataclass(frozen=True)
class Call:
    spec: InvocationSpec
    layer: Layer
    count: int            # runs per image (encoder) or per box (decoder)
    kind: str             # hw.compiler.model.invocation_kind: "linear CAG input", "conv 3x3 depthwise", ...
    read_by: str = "host"  # hw.compiler.model.output_reader: codes | softmax | gelu | relu | host

    @property
    def part(self) -> str:
        return "decoder" if self.spec.layer.startswith(DECODER_PREFIX) else "encoder"


@dataclass
class Workload:
    name: str                   # e.g. "litemedsam ahcptq W4A4"
    model: str
    calls: list[Call]
    identity: dict              # what it was built from (bundle identity, or the shapes' description)
    notes: list[str] = field(default_factory=list)
    record_seconds: float = 0.0  # wall time of the recording run (host steps of one image + one box)
    cache: str | None = None     # the invocation list was read from this file

    @property
    def digest(self) -> str:
        """Content key: the bundle (its manifest's SHA-256) or the shapes' description."""
        text = repr(sorted(self.identity.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class CountingRecorder(Recorder):
    """``Recorder`` that also counts how often each invocation key runs."""

    def __init__(self):
        super().__init__()
        self.counts: Counter = Counter()

    def noted(self, spec, layer, tensors) -> None:
        self.counts[spec.key] += 1
        super().noted(spec, layer, tensors)


def bundle_workload(bundle: Bundle, cache_dir: Path | None = None) -> Workload:
    """The bundle's invocations; with ``cache_dir``, the recorded list (layer, op, shapes, count, reader) is kept
    there under the bundle's manifest digest, so a later run rebuilds it without the host steps."""
    h = bundle.header
    name = f"{h.model} {h.recipe} W{h.weight_bits}A{h.act_bits}"
    identity = bundle_identity(bundle)
    path = None
    if cache_dir is not None and identity.get("manifest_sha256"):
        path = Path(cache_dir) / f"invocations_{identity['manifest_sha256'][:16]}.json"
        data = json.loads(path.read_text()) if path.is_file() else {}
        # older lists lack the reader or the layer an elementwise step feeds: recorded again
        if data.get("calls") and all("read_by" in e and "feeds" in e for e in data["calls"]):
            calls = []
            for e in data["calls"]:
                layer = bundle.layers[e["layer"]]
                # the output lookup is the bundle's (sw.ref.code_map): derived again, not stored
                lookup = OutputLookup.of(layer, e["read_by"], bundle.layers[e["feeds"]]) if e["feeds"] else None
                spec = InvocationSpec.of(layer, e["op"], {k: tuple(v) for k, v in e["shapes"].items()}, lookup)
                calls.append(Call(spec, layer, e["count"], invocation_kind(layer, e["op"]), e["read_by"]))
            return Workload(name, h.model, calls, identity, record_seconds=data["record_seconds"],
                            cache=str(path))
    start = time.perf_counter()
    recorder = record_invocations(bundle, CountingRecorder())
    seconds = time.perf_counter() - start
    calls = [Call(spec, layer, recorder.counts[spec.key], invocation_kind(layer, spec.op),
                  output_reader(layer, spec.op, recorder.elementwise)) for spec, layer in recorder.calls]
    if path is not None:
        write_atomic(path, json.dumps({"bundle": identity, "record_seconds": seconds, "calls": [
            {"layer": c.spec.layer, "op": c.spec.op, "shapes": dict(c.spec.shapes), "count": c.count,
             "read_by": c.read_by, "feeds": c.spec.lookup.into if c.spec.lookup else None}
            for c in calls]}, indent=0) + "\n")
    return Workload(name, h.model, calls, identity, record_seconds=seconds)
