"""Quantization settings as frozen, versioned data.

A recipe names how quantization parameters are found (``minmax``, ``percentile``, ``omse``); the bit
configuration names the widths. Together they make one :class:`QuantConfig`, which is all a quantized
model needs to be rebuilt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..errors import SamhwError

CONFIG_VERSION = 1

BIT_CONFIGS: dict[str, tuple[int, int]] = {
    "w8a8": (8, 8),
    "w6a6": (6, 6),
    "w5a5": (5, 5),
    "w4a4": (4, 4),
}

# Activation observer and weight observer per statistic recipe. Weights use per-output-channel
# ranges in every recipe; OMSE searches them by MSE like the activations, the other two take min/max.
RECIPES: dict[str, dict[str, str]] = {
    "minmax": {"act_observer": "minmax", "weight_observer": "minmax"},
    "percentile": {"act_observer": "percentile", "weight_observer": "minmax"},
    "omse": {"act_observer": "mse", "weight_observer": "mse"},
    # PTQ4SAM-S: OMSE statistics + BIG + AGQ, no reconstruction (methods.md §2).
    "ptq4sam-s": {"act_observer": "mse", "weight_observer": "mse", "softmax_quantizer": "agq", "big": "detected"},
}
SOFTMAX_QUANTIZERS = ("uniform", "log2", "agq")
BIG_SCOPES = ("none", "detected", "token_to_image")


def parse_bits(text: str) -> tuple[int, int]:
    key = str(text).strip().lower()
    if key not in BIT_CONFIGS:
        raise SamhwError(f"unsupported bit width '{text}' (choose from {', '.join(BIT_CONFIGS)})")
    return BIT_CONFIGS[key]


@dataclass(frozen=True)
class QuantConfig:
    """Everything that decides how a model is fake-quantized.

    ``softmax_quantizer``: ``uniform`` (same quantizer as other activations), ``log2`` or ``agq``
    (methods.md §2.1-2.2). ``big``: which bimodal key projections get sign-folded before calibration:
    ``none``, ``detected`` (every foldable attention found bimodal) or ``token_to_image`` (the
    reference code's scope). ``percentile`` is the upper percentile (the lower one is ``100 - percentile``); ``mse_norm`` is the
    exponent p of the OMSE error ``mean |x_hat - x|^p``; ``mse_grid`` the number of clipping candidates.
    """

    recipe: str
    weight_bits: int
    act_bits: int
    act_observer: str
    weight_observer: str
    softmax_quantizer: str = "uniform"
    big: str = "none"
    percentile: float = 99.99
    mse_norm: float = 2.0
    mse_grid: int = 100
    version: int = CONFIG_VERSION

    @property
    def bits_name(self) -> str:
        return f"w{self.weight_bits}a{self.act_bits}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "QuantConfig":
        if data.get("version") != CONFIG_VERSION:
            raise SamhwError(f"quantization config version {data.get('version')} is not supported (expected {CONFIG_VERSION})")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def make_config(recipe: str, bits: str, **overrides) -> QuantConfig:
    if recipe not in RECIPES:
        raise SamhwError(f"unknown recipe '{recipe}' (choose from {', '.join(RECIPES)})")
    weight_bits, act_bits = parse_bits(bits)
    cfg = QuantConfig(recipe=recipe, weight_bits=weight_bits, act_bits=act_bits, **{**RECIPES[recipe], **overrides})
    if cfg.softmax_quantizer not in SOFTMAX_QUANTIZERS:
        raise SamhwError(f"unknown softmax quantizer '{cfg.softmax_quantizer}' (choose from {', '.join(SOFTMAX_QUANTIZERS)})")
    if cfg.big not in BIG_SCOPES:
        raise SamhwError(f"unknown BIG scope '{cfg.big}' (choose from {', '.join(BIG_SCOPES)})")
    return cfg
