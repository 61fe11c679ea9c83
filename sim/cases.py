"""Co-simulation cases: a bundle layer, the operation and PE array, real input codes and the expected
output from the integer reference (sw.ref), ready for the testbench.

Inputs come from ``<bundle>.inputs.npz`` (sw/export/capture.py: the codes the fake-quant model's own
quantizers produced on a held-out image). Attention cases use head ``head`` of the first window /
prompt batch element.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.engine.config import EngineConfig
from hw.engine.image import expected_words, load_words
from hw.engine.layers import Operands, engine_config, linear_operands, scores_operands, values_operands
from sw.ref.kernels import attention_scores
from sw.ref.layers import run_attention_values, run_linear


@dataclass(frozen=True)
class CaseSpec:
    label: str
    layer: str
    op: str | None = None   # None: linear; "scores" / "values" for an attention layer
    pes: tuple[int, int] = (4, 4)
    head: int = 0
    max_rows: int = 64


# The acceptance set of the co-simulation (issue 6): CAG qkv of an encoder block, QK^T and A.V (AGQ
# codes) of one head, the HLUQ fc2 of an encoder MLP, and the decoder token-to-image projections
# (k_proj: CAG on image tokens; out_proj: uniform codes to host codes). The attention arrays are 7 rows
# tall so a 49-token window fills whole row blocks; the decoder q/out projections have 14 token rows.
ACCEPTANCE = (
    CaseSpec("encoder qkv (CAG)", "image_encoder.layers.1.blocks.0.attn.qkv"),
    CaseSpec("encoder QK^T head 0", "image_encoder.layers.1.blocks.0.attn", "scores", (7, 4)),
    CaseSpec("encoder A.V head 0 (AGQ)", "image_encoder.layers.1.blocks.0.attn", "values", (7, 4)),
    CaseSpec("encoder fc2 (HLUQ)", "image_encoder.layers.1.blocks.0.mlp.fc2"),
    CaseSpec("decoder t2i k_proj (CAG)", "mask_decoder.transformer.layers.0.cross_attn_token_to_image.k_proj"),
    CaseSpec("decoder t2i out_proj (uniform)",
             "mask_decoder.transformer.layers.0.cross_attn_token_to_image.out_proj", pes=(2, 8), max_rows=14),
)


@dataclass
class Case:
    spec: CaseSpec
    config: EngineConfig
    ops: Operands
    expected: np.ndarray

    @property
    def key(self) -> str:
        """File-system name of the case's build."""
        op = f"_{self.spec.op}" if self.spec.op else ""
        return f"{self.spec.layer.replace('.', '_')}{op}_{self.config.pe_rows}x{self.config.pe_cols}"

    def job(self) -> dict:
        reads, words = expected_words(self.config, self.expected)
        return {"writes": load_words(self.config, self.ops), "reads": reads, "expected": words,
                "timeout_cycles": 4 * self.config.expected_cycles(self.ops.rows) + 1000}


def _need(inputs, key: str) -> np.ndarray:
    if key not in inputs:
        raise ValueError(f"captured inputs have no '{key}' (capture them with sw/export/capture.py)")
    return np.asarray(inputs[key], np.int64)


def build_case(bundle, inputs, spec: CaseSpec) -> Case:
    layer = bundle.layer(spec.layer)
    if spec.op is None:
        codes = _need(inputs, f"{spec.layer}.input")[:spec.max_rows]
        config = engine_config(layer, None, spec.pes, max(len(codes), 1))
        return Case(spec, config, linear_operands(layer, codes), run_linear(layer, codes))
    p = layer.params
    if spec.op == "scores":
        q = _need(inputs, f"{spec.layer}.q")[spec.head]
        k = _need(inputs, f"{spec.layer}.k")[spec.head]
        config = engine_config(layer, "scores", spec.pes, len(q), keys=len(k), dim=q.shape[1])
        want = attention_scores(q, p["q"]["zero_point"], k, p["k"]["zero_point"])
        return Case(spec, config, scores_operands(layer, q, k), want)
    probs = _need(inputs, f"{spec.layer}.probs")[spec.head]
    v = _need(inputs, f"{spec.layer}.v")[spec.head]
    config = engine_config(layer, "values", spec.pes, len(probs), keys=len(v), dim=v.shape[1])
    return Case(spec, config, values_operands(layer, probs, v), run_attention_values(layer, probs, v))
