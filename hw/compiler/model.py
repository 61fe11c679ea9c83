"""The invocations of a whole model, found by running the bundle's own graph (``sw/ref/run.py``: one
image through the encoder, one box through the decoder) with a recording stand-in for the integer
layers; the host steps between them run unchanged, so the shapes are the ones the model produces.

By default the stand-in returns zeros of the right shape (the graph's shapes do not depend on values,
and the integer layers are most of the run's time); ``Recorder(compute=True, keep_inputs=True)`` runs
the reference instead and keeps every invocation's real input codes, which the acceptance checks feed
to the compiled programs.
"""

from __future__ import annotations

import hashlib

import numpy as np

from sw.bundle import AgqCodes, AttentionLayer, Bundle, CagCodes, CodesOutput, ConvLayer, GemmLayer, HluqCodes
from sw.bundle.store import MANIFEST
from sw.ref.kernels import attention_scores
from sw.ref.layers import run_attention_values, run_layer
from sw.ref.log_softmax import LogSoftmax
from sw.ref.run import decode_masks, encode_image
from sw.ref.steps import IntegerLayers, elementwise_codes

from .invocation import InvocationSpec, OutputLookup


class Recorder(IntegerLayers):
    """An ``IntegerLayers`` that notes every call as an invocation (in call order, duplicates once)."""

    def __init__(self, compute: bool = False, keep_inputs: bool = False):
        self.compute = compute
        self.keep_inputs = keep_inputs
        self.calls: list[tuple[InvocationSpec, object]] = []
        self.inputs: dict[str, dict[str, np.ndarray]] = {}
        self.elementwise: dict[str, str] = {}   # layer -> the elementwise host step its output goes through
        self.feeds: dict[str, GemmLayer] = {}   # ... and the layer that reads the step's result

    def gemm_into(self, layer: GemmLayer, codes: np.ndarray, step: str, into: GemmLayer) -> np.ndarray:
        """Noted with the output lookup that turns the layer's host codes into ``into``'s codes."""
        self.elementwise[layer.name] = step
        self.feeds[layer.name] = into
        self._note(layer, None, {"input": codes}, OutputLookup.of(layer, step, into))
        if self.compute:
            return elementwise_codes(layer, super().gemm(layer, codes), step, into)
        return self._zeros(layer, codes)

    def _note(self, layer, op, tensors: dict[str, np.ndarray], lookup: OutputLookup | None = None) -> None:
        self.noted(InvocationSpec.of(layer, op, {k: v.shape for k, v in tensors.items()}, lookup), layer, tensors)

    def noted(self, spec: InvocationSpec, layer, tensors: dict[str, np.ndarray]) -> None:
        """Every integer call, as its invocation: the first of each key is kept (subclasses see them all)."""
        if spec.key not in self.inputs:
            self.calls.append((spec, layer))
            self.inputs[spec.key] = ({k: np.asarray(v).astype(np.uint8) for k, v in tensors.items()}
                                     if self.keep_inputs else {})

    def gemm(self, layer: GemmLayer, codes: np.ndarray) -> np.ndarray:
        self._note(layer, None, {"input": codes})
        return super().gemm(layer, codes) if self.compute else self._zeros(layer, codes)

    @staticmethod
    def _zeros(layer: GemmLayer, codes: np.ndarray) -> np.ndarray:
        """Zeros shaped like the layer's output."""
        if isinstance(layer, ConvLayer):
            from .conv import conv_output_size

            b, _, h, w = codes.shape
            kh, kw = layer.kernel_size
            return np.zeros((b, layer.out_channels, *conv_output_size(h, w, kh, kw, layer.stride, layer.padding)),
                            np.int64)
        return np.zeros(codes.shape[:-1] + (layer.out_channels,), np.int64)

    def scores(self, layer: AttentionLayer, q: np.ndarray, k: np.ndarray) -> np.ndarray:
        self._note(layer, "scores", {"q": q, "k": k})
        return super().scores(layer, q, k) if self.compute else np.zeros(q.shape[:-1] + (k.shape[-2],), np.int64)

    def values(self, layer: AttentionLayer, probs: np.ndarray, v: np.ndarray) -> np.ndarray:
        self._note(layer, "values", {"probs": probs, "v": v})
        if self.compute:
            return super().values(layer, probs, v)
        return np.zeros(probs.shape[:-1] + (v.shape[-1],), np.int64)


def model_inputs(bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
    """The image and box the recording runs: a mid-grey image and a centred box (shapes are what count)."""
    size = bundle.host.structure.image_size
    return np.zeros((1, 3, size, size)), np.array([[size / 4, size / 4, 3 * size / 4, 3 * size / 4]])


def record_invocations(bundle: Bundle, recorder: Recorder | None = None, image: np.ndarray | None = None,
                       box: np.ndarray | None = None) -> Recorder:
    """Run ``encode_image`` on one image and ``decode_masks`` on one box with ``recorder`` in place of
    the integer layers."""
    recorder = recorder or Recorder()
    default_image, default_box = model_inputs(bundle)
    embedding = encode_image(bundle, default_image if image is None else image, recorder)
    decode_masks(bundle, embedding, default_box if box is None else box, recorder)
    return recorder


def bundle_identity(bundle: Bundle) -> dict:
    """What a program records of the bundle it was compiled from."""
    h = bundle.header
    digest = None
    if bundle.path is not None and (bundle.path / MANIFEST).is_file():
        digest = hashlib.sha256((bundle.path / MANIFEST).read_bytes()).hexdigest()
    return {"model": h.model, "recipe": h.recipe, "weight_bits": h.weight_bits, "act_bits": h.act_bits,
            "layers": len(bundle.layers), "manifest_sha256": digest}


def model_calls(bundle: Bundle, config) -> list:
    """Every quantized layer invocation of the model (one image, one box) as ``config`` runs it: on a core
    with the softmax path, a QK^T it can take comes with its softmax (``softmax.softmax_on_chip``)."""
    from .softmax import softmax_on_chip

    return softmax_on_chip(record_invocations(bundle).calls, config)


def compile_bundle(bundle: Bundle, config) -> "Program":
    """Every quantized layer invocation of the model (one image, one box) compiled for ``config``."""
    from .program import build_program

    return build_program(config, model_calls(bundle, config), bundle_identity(bundle))


def invocation_kind(layer, op: str | None) -> str:
    """The kind of an invocation as the acceptance lists name it (``conv 3x3 depthwise``, ``A.V AGQ tau=2``)."""
    where = "decoder " if layer.name.startswith("mask_decoder") else ""
    if op == "scores":
        return f"{where}QK^T"
    if op == "probs":
        return f"{where}QK^T + softmax"
    if op == "values":
        sm = layer.softmax
        return f"{where}A.V " + (f"AGQ tau={sm.tau}" if isinstance(sm, AgqCodes) else "uniform softmax")
    if isinstance(layer, ConvLayer):
        kh, kw = layer.kernel_size
        if (kh, kw) == (1, 1):
            return "conv 1x1"
        shape = "depthwise" if layer.depthwise else "dense"
        return f"conv {kh}x{kw} {shape}" + (f" stride {layer.stride} (patch merging)" if layer.stride > 1 else "")
    fmt = layer.input
    name = "CAG" if isinstance(fmt, CagCodes) else "HLUQ" if isinstance(fmt, HluqCodes) else "uniform"
    return f"{where}linear {name} input"


def output_reader(layer, op: str | None, elementwise: dict[str, str]) -> str:
    """Which host step reads an invocation's output: ``codes`` (none: it is the next integer stage's
    codes already), ``softmax`` (QK^T scores), an elementwise step into the next layer (``gelu``,
    ``relu``: ``Recorder.elementwise``) or ``host`` (LayerNorm, residual adds and other steps that
    mix values)."""
    if op == "scores":
        return "softmax"
    if op in ("values", "probs") or isinstance(layer.output, CodesOutput):
        return "codes"
    return elementwise.get(layer.name, "host")


def reference_outputs(layer, op: str | None, inputs: dict[str, np.ndarray],
                      feeds: tuple[str, GemmLayer] | None = None) -> dict[str, np.ndarray]:
    """What sw/ref computes for an invocation's inputs, keyed like the program's output regions; with
    ``feeds`` = (step, into) (an invocation with an output lookup), ``into``'s input codes."""
    if feeds is not None:
        step, into = feeds
        return {"output": elementwise_codes(layer, run_layer(layer, inputs["input"]), step, into)}
    if op == "scores":
        return {"scores": attention_scores(inputs["q"], layer.q.zero_point, inputs["k"], layer.k.zero_point)}
    if op == "probs":
        scores = attention_scores(inputs["q"], layer.q.zero_point, inputs["k"], layer.k.zero_point)
        return {"probs": LogSoftmax.of(layer).codes(scores, inputs["q"])}
    if op == "values":
        return {"output": run_attention_values(layer, inputs["probs"], inputs["v"])}
    return {"output": run_layer(layer, inputs["input"])}
