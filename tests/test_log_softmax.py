"""The integer softmax into AGQ codes (sw/ref/log_softmax.py) against the host's float step
(sw/ref/layers.probabilities_from_scores): equal where the float result is exactly representable, equal
but for rare boundary flips of one code elsewhere, and refusing what it does not define."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim.random_layers import attention_layer, with_field
from sw.bundle import AttentionLayer, BundleError, UniformCodes
from sw.ref.layers import probabilities_from_scores
from sw.ref.log_softmax import LogSoftmax, LogSoftmaxLayers


def _layer(rng, tau: int, keys: int, bias: bool, scale: float = 0.3, heads: int = 1):
    layer = attention_layer(rng, tau, 7, keys, dim=8)
    layer = with_field(layer, "q.scale", 0.35)          # logits of a few units, as in the real bundles
    layer = with_field(layer, "k.scale", 0.4)
    layer = with_field(layer, "softmax.scale", scale)
    if bias:
        layer = with_field(layer, "attention_bias", rng.normal(0, 1.5, (heads, keys, keys)).astype(np.float32))
    return layer


def _scores(rng, rows: int, keys: int) -> np.ndarray:
    return rng.integers(-900, 900, (2, 1, rows, keys))


@pytest.mark.parametrize("tau,bias", [(1, False), (2, True), (4, False), (4, True)])
def test_codes_are_the_float_steps_but_for_rare_flips_by_one(tau, bias):
    rng = np.random.default_rng(tau + 10 * bias)
    layer = _layer(rng, tau, 49, bias)
    scores = _scores(rng, 49, 49)
    ref = probabilities_from_scores(layer, scores, None)
    codes = LogSoftmax.of(layer).codes(scores)
    assert codes.shape == ref.shape and codes.dtype == np.int64
    assert np.abs(codes - ref).max() <= 1
    assert np.mean(codes == ref) >= 0.995
    assert 0 < np.mean(ref == layer.softmax.zero_code) < 1      # both ends of the code range occur


def test_coarser_constants_flip_more_codes():
    rng = np.random.default_rng(3)
    layer = _layer(rng, 4, 49, True)
    scores = _scores(rng, 49, 49)
    ref = probabilities_from_scores(layer, scores, None)
    agree = [np.mean(LogSoftmax.of(layer, frac_bits=f, exp_bits=e, log_bits=g).codes(scores) == ref)
             for f, e, g in ((3, 8, 3), (6, 14, 6), (10, 20, 10))]
    assert agree[0] < agree[1] < agree[2]


def test_exact_where_the_float_softmax_is_representable():
    """Equal logits in a row of 2^k keys: p = 2^-k, so code = tau k + tau log2(1 / scale) exactly; one
    dominant key: code 0 for it, the zero code for the others."""
    rng = np.random.default_rng(1)
    for tau in (1, 2, 4):
        layer = _layer(rng, tau, 16, False, scale=0.5)
        unit = LogSoftmax.of(layer)
        assert (unit.codes(np.full((1, 1, 1, 16), 37)) == tau * (4 - 1)).all()
        assert (unit.codes(np.full((1, 1, 1, 4), -5)) == tau * (2 - 1)).all()
        row = np.full((1, 1, 1, 16), -900)
        row[..., 3] = 900
        codes = unit.codes(row)
        assert codes[..., 3] == 0 and (np.delete(codes, 3, axis=-1) == layer.softmax.zero_code).all()
        np.testing.assert_array_equal(codes, probabilities_from_scores(layer, row, None))


def test_layers_object_routes_every_softmax_and_refuses_what_it_does_not_define():
    rng = np.random.default_rng(2)
    layer = _layer(rng, 2, 49, True)
    scores = _scores(rng, 49, 49)
    layers = LogSoftmaxLayers(frac_bits=9)
    np.testing.assert_array_equal(layers.probabilities(layer, scores, None),
                                  LogSoftmax.of(layer, frac_bits=9).codes(scores))
    assert layers.unit(layer) is layers.unit(layer)
    uniform = with_field(layer, "softmax", UniformCodes(act_bits=4, scale=1 / 15, zero_point=0))
    with pytest.raises(BundleError, match="attn: the integer softmax writes AGQ codes"):
        LogSoftmax.of(uniform)
    with pytest.raises(ValueError, match="attn: unsupported integer softmax widths F=10, E=8, G=10"):
        LogSoftmax.of(layer, exp_bits=8)
    with pytest.raises(BundleError, match="do not match the bias"):
        LogSoftmax.of(layer).codes(_scores(rng, 7, 7))


@pytest.mark.parametrize("tau", [1, 4])
def test_sam_relative_position_term_in_integer_form_gives_the_float_steps_codes_but_rare_flips(tau):
    """SAM ViT's decomposed relative-position term (16-bit table codes, integer dot products with the query
    codes, each requantized to 2^-F log2 units) against the host's float step on a 7 x 7 grid."""
    rng = np.random.default_rng(20 + tau)
    side, dim = 7, 8
    layer = _layer(rng, tau, side * side, False)
    layer = dataclasses.replace(layer, rel_pos_h=rng.normal(0, 0.4, (2 * side - 1, dim)).astype(np.float32),
                                rel_pos_w=rng.normal(0, 0.4, (2 * side - 1, dim)).astype(np.float32))
    scores = _scores(rng, side * side, side * side)[:, 0]       # SAM ViT folds heads into the batch
    q = rng.integers(0, 16, (2, side * side, dim))
    ref = probabilities_from_scores(layer, scores, q)
    unit = LogSoftmax.of(layer)
    codes = unit.codes(scores, q)
    assert np.abs(codes - ref).max() <= 1 and np.mean(codes == ref) >= 0.99
    assert np.mean(dataclasses.replace(unit, relative=None).codes(scores) == ref) < 0.97   # the term matters
    np.testing.assert_array_equal(LogSoftmaxLayers().probabilities(layer, scores, q), codes)
    with pytest.raises(BundleError, match="attn: the relative-position term needs the query codes"):
        unit.codes(scores)


def test_integer_softmax_on_every_attention_of_a_tiny_sam_vit_bundle(tiny_ahcptq, tiny_sam_vit_bundle, calib_items):
    """Every attention of a tiny SAM ViT's AHCPTQ W4A4 bundle (windowed and global, each with the
    relative-position term) on q / k codes captured from a real image: the integer codes against the float
    step's on the same scores."""
    from sw.bundle import AgqCodes, load_bundle
    from sw.export.capture import capture_inputs
    from sw.ref.kernels import attention_scores

    bundle = load_bundle(tiny_sam_vit_bundle)
    captured = capture_inputs(tiny_ahcptq, calib_items[1], max_rows=16)
    layers = [layer for layer in bundle.of_kind(AttentionLayer) if isinstance(layer.softmax, AgqCodes)
              and layer.rel_pos_h is not None]
    assert len(layers) >= 2
    for layer in layers:
        q, k = (captured[f"{layer.name}.{part}"].astype(np.int64) for part in ("q", "k"))
        scores = attention_scores(q, layer.q.zero_point, k, layer.k.zero_point)
        ref = probabilities_from_scores(layer, scores, q)
        mine = LogSoftmax.of(layer).codes(scores, q)
        assert np.abs(mine - ref).max() <= 1 and np.mean(mine == ref) >= 0.99, layer.name
