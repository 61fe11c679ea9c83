"""The bundle contract: the one typed bridge from the torch side (``sw/export``) to the integer
reference (``sw/ref``), the hardware generator (``hw``), the co-simulation (``sim``) and the board
builds (``bitstreams``). Numpy only.

Layers and code formats are frozen records (``layers``, ``codes``, ``outputs``, ``host``), checked when
built and when read (``store``); the fixed-point constants live in ``fixed_point``; the captured-inputs
file beside a bundle in ``captured``. ``python -m sw.bundle.schema_doc`` writes docs/bundle_schema.md
from the records themselves.
"""

from .captured import AttentionInputs, CapturedInputs, captured_inputs_path, load_captured_inputs, save_captured_inputs
from .codes import AgqCodes, CagCodes, CodeFormat, HluqCodes, InputCodes, SoftmaxCodes, UniformCodes, code_max
from .host import (HOST_LAYER, FloatConv, HostLayer, HostStructure, MaskDecoderStructure, PromptEncoderStructure,
                   RecordedEncoder, TinyVitStructure)
from .layers import AttentionLayer, AttentionScores, AttentionValues, ConvLayer, GemmLayer, Layer, LinearLayer, Weights
from .outputs import CodesOutput, HostOutput, LayerOutput
from .record import ContractError
from .store import SCHEMA_VERSION, Bundle, BundleError, BundleHeader, load_bundle, write_bundle

__all__ = [
    "AgqCodes", "AttentionInputs", "AttentionLayer", "AttentionScores", "AttentionValues", "Bundle", "BundleError",
    "BundleHeader", "CagCodes", "CapturedInputs", "CodeFormat", "CodesOutput", "ContractError", "ConvLayer",
    "FloatConv", "GemmLayer", "HOST_LAYER", "HluqCodes", "HostLayer", "HostOutput", "HostStructure", "InputCodes",
    "Layer", "LayerOutput", "LinearLayer", "MaskDecoderStructure", "PromptEncoderStructure", "RecordedEncoder",
    "SCHEMA_VERSION", "SoftmaxCodes", "TinyVitStructure", "UniformCodes", "Weights", "captured_inputs_path",
    "code_max", "load_bundle", "load_captured_inputs", "save_captured_inputs", "write_bundle",
]
