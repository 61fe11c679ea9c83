"""Co-simulation cases: a bundle layer, the operation and PE array, real input codes and the expected
output from the integer reference (sw.ref), ready for the testbench.

Inputs come from the bundle's captured-inputs file (``sw/bundle/captured.py``: the codes the fake-quant
model's own quantizers produced on a held-out image). Attention cases use head ``head`` of the first
window / prompt batch element.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.engine.config import EngineConfig
from hw.engine.image import expected_words, load_words
from hw.engine.layers import Operands, engine_config, linear_operands, scores_operands, values_operands
from hw.generate import parse_pes
from sw.bundle import AttentionLayer, Bundle, CapturedInputs, LinearLayer
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


def select_specs(layer: str | None, op: str | None, pes: str | None) -> list[CaseSpec]:
    """The acceptance set (on ``pes`` if given), or one layer (with ``op`` for an attention layer)."""
    if layer is None:
        if op:
            raise ValueError("--op needs --layer")
        if pes:
            return [CaseSpec(s.label, s.layer, s.op, parse_pes(pes), s.head, s.max_rows) for s in ACCEPTANCE]
        return list(ACCEPTANCE)
    return [CaseSpec(layer + (f" {op}" if op else ""), layer, op, parse_pes(pes or "4x4"))]


def build_case(bundle: Bundle, inputs: CapturedInputs, spec: CaseSpec) -> Case:
    if spec.op is None:
        layer = bundle.layer(spec.layer, LinearLayer)
        codes = inputs.gemm_input(spec.layer)[:spec.max_rows]
        config = engine_config(layer, None, spec.pes, max(len(codes), 1))
        return Case(spec, config, linear_operands(layer, codes), run_linear(layer, codes))
    layer = bundle.layer(spec.layer, AttentionLayer)
    codes = inputs.attention(spec.layer)
    if spec.op == "scores":
        q, k = codes.q[spec.head], codes.k[spec.head]
        config = engine_config(layer, "scores", spec.pes, len(q), keys=len(k), dim=q.shape[1])
        want = attention_scores(q, layer.q.zero_point, k, layer.k.zero_point)
        return Case(spec, config, scores_operands(layer, q, k), want)
    probs, v = codes.probs[spec.head], codes.v[spec.head]
    config = engine_config(layer, "values", spec.pes, len(probs), keys=len(v), dim=v.shape[1])
    return Case(spec, config, values_operands(layer, probs, v), run_attention_values(layer, probs, v))
