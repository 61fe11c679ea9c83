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

from . import graph_host as G
from .bundle import Bundle, BundleError, Layer
from .host import cag_encode, hluq_encode, uniform_encode
from .layers import attention_probabilities, run_attention_values, run_layer

HOST_LAYER = "host"


class Steps:
    """One bundle's layers and host parameters, run step by step (see the module docstring)."""

    def __init__(self, bundle: Bundle):
        host = bundle.layer(HOST_LAYER)
        if host.kind != "host":
            raise BundleError(f"{self._where(bundle)}: layer '{HOST_LAYER}' is a {host.kind}, not the host parameters")
        self.bundle = bundle
        self.structure = host.params
        self._host = host.tensors

    @staticmethod
    def _where(bundle: Bundle) -> str:
        return str(bundle.path) if bundle.path else "bundle"

    # -- host parameters ----------------------------------------------------------------------
    def param(self, key: str) -> np.ndarray:
        if key not in self._host:
            raise BundleError(f"{self._where(self.bundle)}: host layer has no tensor '{key}' "
                              "(exported by an older samhw? export again)")
        return self._host[key].astype(np.float64)

    def has_param(self, key: str) -> bool:
        return key in self._host

    def _geometry(self, name: str) -> dict:
        convs = self.structure.get("convs", {})
        if name not in convs:
            raise BundleError(f"{self._where(self.bundle)}: host layer has no geometry for conv '{name}'")
        return convs[name]

    def _eps(self, name: str) -> float:
        eps = self.structure.get("norm_eps", {})
        if name not in eps:
            raise BundleError(f"{self._where(self.bundle)}: host layer has no LayerNorm '{name}'")
        return float(eps[name])

    def _bias(self, name: str) -> np.ndarray | None:
        return self.param(f"{name}.bias") if self.has_param(f"{name}.bias") else None

    # -- float steps (host) -------------------------------------------------------------------
    def conv(self, name: str, x: np.ndarray) -> np.ndarray:
        g = self._geometry(name)
        return G.conv2d(x, self.param(f"{name}.weight"), self._bias(name), g["stride"], g["padding"], g["groups"])

    def conv_transpose(self, name: str, x: np.ndarray) -> np.ndarray:
        g = self._geometry(name)
        return G.conv_transpose2d(x, self.param(f"{name}.weight"), self._bias(name), g["stride"])

    def layer_norm(self, name: str, x: np.ndarray) -> np.ndarray:
        return G.layer_norm(x, self.param(f"{name}.weight"), self.param(f"{name}.bias"), self._eps(name))

    def layer_norm_2d(self, name: str, x: np.ndarray) -> np.ndarray:
        return G.layer_norm_2d(x, self.param(f"{name}.weight"), self.param(f"{name}.bias"), self._eps(name))

    def mlp(self, name: str, x: np.ndarray, depth: int) -> np.ndarray:
        return G.mlp(x, [(self.param(f"{name}.layers.{i}.weight"), self.param(f"{name}.layers.{i}.bias"))
                         for i in range(depth)])

    # -- host -> accelerator -> host ----------------------------------------------------------
    def _integer(self, name: str, kinds: tuple[str, ...]) -> Layer:
        layer = self.bundle.layer(name)
        if layer.kind not in kinds:
            raise BundleError(f"{self._where(self.bundle)}: layer '{name}' is a {layer.kind}, expected {' or '.join(kinds)}")
        return layer

    @staticmethod
    def encode(layer: Layer, x: np.ndarray) -> np.ndarray:
        """Host boundary: the layer's input quantizer turns the host's float result into its codes."""
        fmt = layer.params["input"]
        if fmt["format"] == "uniform":
            return uniform_encode(x, fmt["scale"], fmt["zero_point"], fmt["bits"])
        if fmt["format"] == "cag":
            return cag_encode(x, layer["group_scale"], layer["group_zero_point"], layer["channel_group"], fmt["bits"])
        return hluq_encode(x, fmt["m"], fmt["s_log"], fmt["s_uni"], fmt["bits"], fmt["log_levels"])

    def from_codes(self, name: str, codes: np.ndarray) -> np.ndarray:
        """Run integer layer ``name`` on input codes; its 16-bit host code comes back as a real value."""
        layer = self._integer(name, ("linear", "conv2d"))
        out = layer.params["output"]
        if out["to"] != "host":
            raise BundleError(f"{self._where(self.bundle)}: layer '{name}' writes {out['to']}, not host codes")
        return run_layer(layer, codes).astype(np.float64) * out["scale"]

    def quantized(self, name: str, x: np.ndarray) -> np.ndarray:
        """Float in, float out through integer layer ``name`` (inputs channels-last, convs NCHW)."""
        return self.from_codes(name, self.encode(self._integer(name, ("linear", "conv2d")), x))

    def projection_codes(self, name: str, x: np.ndarray) -> np.ndarray:
        """q/k/v projection: float in, the attention quantizers' codes out (they never become floats)."""
        layer = self._integer(name, ("linear",))
        if layer.params["output"]["to"] != "codes":
            raise BundleError(f"{self._where(self.bundle)}: layer '{name}' writes host codes, not q/k/v codes")
        return run_layer(layer, self.encode(layer, x))

    def attention(self, name: str, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Codes [..., heads, Nq, d] of the output projection's input from q/k/v codes [..., heads, N, d];
        the softmax between the two integer stages is the host's (``attention_probabilities``)."""
        layer = self._integer(name, ("attention",))
        return run_attention_values(layer, attention_probabilities(layer, q, k), v)
