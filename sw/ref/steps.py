"""A bundle as float-in, float-out steps: where the whole-model run crosses between host and accelerator.

Every quantized layer is entered the same way the fake-quant model enters it: the host encodes its
float input with the layer's own input quantizer (uniform, CAG or HLUQ codes), the integer layer runs
exactly (``sw/ref/layers.py``), and what comes back is either a signed 16-bit host code, which the host
turns into a real value with the layer's one scale, or (q/k/v projections) codes that the attention's
integer stages read directly, never seen as floats. Float steps read their parameters from the bundle's
``host`` layer (``sw/export/host_params.py``).
"""

from __future__ import annotations

import numpy as np

from ..bundle import (AttentionLayer, Bundle, BundleError, CagCodes, GemmLayer, HluqCodes, HostOutput, InputCodes,
                      LinearLayer, UniformCodes)
from . import graph_host as G
from .host import cag_encode, hluq_encode, uniform_encode
from .kernels import attention_scores
from .layers import probabilities_from_scores, run_attention_values, run_layer


def encode_input(fmt: InputCodes, x: np.ndarray) -> np.ndarray:
    """Host boundary: a layer's input quantizer turns the host's float result into its codes."""
    if isinstance(fmt, UniformCodes):
        return uniform_encode(x, fmt.scale, fmt.zero_point, fmt.act_bits)
    if isinstance(fmt, CagCodes):
        return cag_encode(x, fmt.group_scale, fmt.group_zero_point, fmt.channel_group, fmt.act_bits)
    if isinstance(fmt, HluqCodes):
        return hluq_encode(x, fmt.m, fmt.s_log, fmt.s_uni, fmt.act_bits, fmt.log_levels)
    raise TypeError(f"unknown input code format {type(fmt).__name__}")


def elementwise_codes(layer: GemmLayer, host_codes: np.ndarray, step: str, into: GemmLayer) -> np.ndarray:
    """Host codes of ``layer`` through elementwise ``step`` (a ``graph_host`` function's name), encoded
    by ``into``'s input quantizer: what the host does between two integer layers of an MLP."""
    return encode_input(into.input, getattr(G, step)(host_codes.astype(np.float64) * layer.output.scale))


class IntegerLayers:
    """Where the integer layers run: this reference computes them with ``sw/ref/layers.py``. ``Steps``
    takes any object with these methods, so a caller can observe every integer call (the shapes a
    compiler needs) or run it elsewhere (an accelerator), with the host steps around it unchanged."""

    def gemm(self, layer: GemmLayer, codes: np.ndarray) -> np.ndarray:
        """Output codes of a linear or conv layer from its input codes."""
        return run_layer(layer, codes)

    def gemm_into(self, layer: GemmLayer, codes: np.ndarray, step: str, into: GemmLayer) -> np.ndarray:
        """``into``'s input codes from ``layer``'s input codes, where the host reads ``layer``'s output
        only through elementwise ``step`` (a ``graph_host`` function's name: the MLPs' GELU and ReLU):
        a recorder notes such outputs, and an accelerator with an output lookup computes the codes
        itself (``sw.ref.code_map``)."""
        return elementwise_codes(layer, self.gemm(layer, codes), step, into)

    def scores(self, layer: AttentionLayer, q: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Integer QK^T [..., heads, Nq, Nk] from query and key codes [..., heads, N, d]."""
        return attention_scores(q, layer.q.zero_point, k, layer.k.zero_point)

    def probabilities(self, layer: AttentionLayer, scores: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Post-softmax codes from the integer scores (and the query codes, which SAM ViT's position term
        reads): the host's float step here; ``sw.ref.log_softmax`` is its integer form."""
        return probabilities_from_scores(layer, scores, q)

    def attention_probabilities(self, layer: AttentionLayer, q: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Post-softmax codes from query and key codes: ``scores``, then ``probabilities`` (an accelerator
        with the softmax on chip computes both in one call)."""
        return self.probabilities(layer, self.scores(layer, q, k), q)

    def values(self, layer: AttentionLayer, probs: np.ndarray, v: np.ndarray) -> np.ndarray:
        """A.V requantized into the output projection's input codes."""
        return run_attention_values(layer, probs, v)


class Steps:
    """One bundle's layers and host parameters, run step by step (see the module docstring)."""

    def __init__(self, bundle: Bundle, layers: IntegerLayers | None = None):
        host = bundle.host
        self.bundle = bundle
        self.structure = host.structure
        self._host = host.parameters
        self.layers = layers or IntegerLayers()

    # -- host parameters ----------------------------------------------------------------------
    def param(self, key: str) -> np.ndarray:
        if key not in self._host:
            raise BundleError(f"{self.bundle.where}: host layer has no tensor '{key}'")
        return self._host[key].astype(np.float64)

    def has_param(self, key: str) -> bool:
        return key in self._host

    def _geometry(self, name: str):
        if name not in self.structure.convs:
            raise BundleError(f"{self.bundle.where}: host layer has no geometry for conv '{name}'")
        return self.structure.convs[name]

    def _eps(self, name: str) -> float:
        if name not in self.structure.norm_eps:
            raise BundleError(f"{self.bundle.where}: host layer has no LayerNorm '{name}'")
        return self.structure.norm_eps[name]

    def _bias(self, name: str) -> np.ndarray | None:
        return self.param(f"{name}.bias") if self.has_param(f"{name}.bias") else None

    # -- float steps (host) -------------------------------------------------------------------
    def conv(self, name: str, x: np.ndarray) -> np.ndarray:
        g = self._geometry(name)
        return G.conv2d(x, self.param(f"{name}.weight"), self._bias(name), g.stride, g.padding, g.groups)

    def conv_transpose(self, name: str, x: np.ndarray) -> np.ndarray:
        g = self._geometry(name)
        return G.conv_transpose2d(x, self.param(f"{name}.weight"), self._bias(name), g.stride)

    def layer_norm(self, name: str, x: np.ndarray) -> np.ndarray:
        return G.layer_norm(x, self.param(f"{name}.weight"), self.param(f"{name}.bias"), self._eps(name))

    def layer_norm_2d(self, name: str, x: np.ndarray) -> np.ndarray:
        return G.layer_norm_2d(x, self.param(f"{name}.weight"), self.param(f"{name}.bias"), self._eps(name))

    def mlp(self, name: str, x: np.ndarray, depth: int) -> np.ndarray:
        return G.mlp(x, [(self.param(f"{name}.layers.{i}.weight"), self.param(f"{name}.layers.{i}.bias"))
                         for i in range(depth)])

    # -- host -> accelerator -> host ----------------------------------------------------------
    def from_codes(self, name: str, codes: np.ndarray) -> np.ndarray:
        """Run integer layer ``name`` on input codes; its 16-bit host code comes back as a real value."""
        layer = self.bundle.gemm(name)
        if not isinstance(layer.output, HostOutput):
            raise BundleError(f"{self.bundle.where}: layer '{name}' writes {layer.output.TAG}, not host codes")
        return self.layers.gemm(layer, codes).astype(np.float64) * layer.output.scale

    def quantized(self, name: str, x: np.ndarray) -> np.ndarray:
        """Float in, float out through integer layer ``name`` (inputs channels-last, convs NCHW)."""
        return self.from_codes(name, encode_input(self.bundle.gemm(name).input, x))

    def quantized_into(self, name: str, step, x: np.ndarray, into: str) -> np.ndarray:
        """Float in, ``into``'s input codes out: integer layer ``name``, then an elementwise host step whose
        result only ``into`` reads (the MLPs' GELU and ReLU), then ``into``'s input quantizer."""
        return self.codes_into(name, step, encode_input(self.bundle.gemm(name).input, x), into)

    def codes_into(self, name: str, step, codes: np.ndarray, into: str) -> np.ndarray:
        """``quantized_into`` from ``name``'s input codes (``IntegerLayers.gemm_into``)."""
        layer = self.bundle.gemm(name)
        if not isinstance(layer.output, HostOutput):
            raise BundleError(f"{self.bundle.where}: layer '{name}' writes {layer.output.TAG}, not host codes")
        return self.layers.gemm_into(layer, codes, step.__name__, self.bundle.gemm(into))

    def projection_codes(self, name: str, x: np.ndarray) -> np.ndarray:
        """q/k/v projection: float in, the attention quantizers' codes out (they never become floats)."""
        layer = self.bundle.layer(name, LinearLayer)
        if isinstance(layer.output, HostOutput):
            raise BundleError(f"{self.bundle.where}: layer '{name}' writes host codes, not q/k/v codes")
        return self.layers.gemm(layer, encode_input(layer.input, x))

    def attention(self, name: str, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Codes [..., heads, Nq, d] of the output projection's input from q/k/v codes [..., heads, N, d];
        the softmax between the two integer stages is ``IntegerLayers.probabilities``."""
        layer = self.bundle.attention(name)
        probs = self.layers.attention_probabilities(layer, q, k)
        return self.layers.values(layer, probs, v)
