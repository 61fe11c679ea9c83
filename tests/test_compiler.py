"""The compiler (hw/compiler): every layer kind compiled and run in the functional model equals sw/ref
exactly, on synthetic layers with random and extreme codes and on a real LiteMedSAM bundle; refusals
are one line naming the layer and the limit; programs are deterministic and checked when read."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hw.compiler import CompileError, build_program, compile_layer
from hw.compiler.invocation import InvocationSpec, plan_invocation
from hw.compiler.conv import plan_conv
from hw.compiler.lower import lower_conv, lower_linear, lower_values, softmax_row_bound
from hw.compiler.plan import moved_words, words_moved
from hw.compiler.rows import plan_rows
from hw.compiler.store import ProgramError, load_program, write_program
from hw.core.config import PRESETS, CoreConfig
from hw.core.isa import Buffer, Opcode
from sim.random_layers import (EXTREMES, attention_layer, conv_layer, linear_layer, random_codes,
                               softmax_layer, with_field, with_fitted_shift)
from sw.bundle import AgqCodes
from sw.ref.kernels import attention_scores, attention_values
from sw.ref.layers import (conv_accumulator, linear_accumulator, probabilities_from_scores, probability_operands,
                           run_attention_values, run_conv, run_linear)
from sw.ref.log_softmax import LogSoftmax

ROOT = Path(__file__).resolve().parents[1]
# Buffers of a few words: rows and column blocks chunked, several runs of the core, single buffering.
TINY = CoreConfig(rows=4, cols=4, act_words=160, wgt_words=64, out_words=64, param_words=32, prog_words=40,
                  max_segments=4)
# PEs without Y: HLUQ and AGQ (tau >= 2) layers as two or four X-only segments
W4_X_ONLY = dataclasses.replace(PRESETS["w4-16x16"], y_accumulators=False)
# Y's term registers for shifts up to 3: HLUQ of L = 4 and AGQ tau = 4 (Q = 3) use Y, AGQ tau = 2 (Q = 7) X only
W4_NARROW_Y = dataclasses.replace(PRESETS["w4-16x16"], y_max_shift=3)
CONFIGS = {"w8": PRESETS["w8-16x16"], "w4": PRESETS["w4-16x16"], "tiny": TINY, "w4-x-only": W4_X_ONLY,
           "w4-narrow-y": W4_NARROW_Y}
# 4-bit codes in buffers that force conv bands: 64 codes to a word, so a band mostly starts inside one
TINY_W4 = dataclasses.replace(TINY, act_bits=4, weight_bits=4, act_words=48)
CONV_CONFIGS = CONFIGS | {"tiny-w4": TINY_W4}


def run_one(config, layer, op, inputs: dict) -> dict:
    program = compile_layer(config, layer, op, {k: v.shape for k, v in inputs.items()})
    return program.run(program.invocations[0].key, inputs)


codes = random_codes  # random codes, or all at one end of the range, or alternating ends


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("fmt", ["uniform", "cag", "hluq"])
@pytest.mark.parametrize("output", ["codes", "host"])
def test_linear_layers_equal_the_reference(config, fmt, output):
    rng = np.random.default_rng([len(fmt), len(output), len(config)])
    layer = linear_layer(rng, fmt, 72, 40, output=output)
    x = codes(rng, (3, 37, 72))
    layer = with_fitted_shift(layer, linear_accumulator(layer, x))
    for extreme in EXTREMES:
        x = codes(rng, (3, 37, 72), extreme=extreme)
        assert np.array_equal(run_one(CONFIGS[config], layer, None, {"input": x})["output"], run_linear(layer, x))


CONVS = {"dense3x3": (8, 12, 3, 1, 1, 1), "depthwise": (12, 12, 3, 1, 1, 12), "patch_merging": (12, 12, 3, 2, 1, 12),
         "pointwise": (8, 10, 1, 1, 0, 1), "grouped_stride2": (8, 12, 3, 2, 0, 4), "dense2x2_stride2": (6, 6, 2, 2, 0, 1)}


@pytest.mark.parametrize("config", CONV_CONFIGS, ids=str)
@pytest.mark.parametrize("geometry", CONVS)
def test_convs_equal_the_reference(config, geometry):
    c, o, k, stride, padding, groups = CONVS[geometry]
    rng = np.random.default_rng([c, o, k, stride, len(config)])
    for output in ("codes", "host"):
        layer = conv_layer(rng, c, o, k, stride=stride, padding=padding, groups=groups, output=output)
        x = codes(rng, (2, c, 11, 9))
        layer = with_fitted_shift(layer, conv_accumulator(layer, x).transpose(0, 2, 3, 1))
        for extreme in EXTREMES:
            x = codes(rng, (2, c, 11, 9), extreme=extreme)
            got = run_one(CONV_CONFIGS[config], layer, None, {"input": x})["output"]
            assert np.array_equal(got, run_conv(layer, x)), (output, extreme)


def test_y_terms_past_y_max_shift_take_the_x_only_form():
    rng = np.random.default_rng(3)
    for levels, uses_y in ((4, 1), (5, 0)):         # log shifts up to L - 1 against y_max_shift 3
        layer = linear_layer(rng, "hluq", 72, 40, log_levels=levels)
        spec = lower_linear(W4_NARROW_Y, layer, (37, 72), "fc")
        assert (spec.arith.loops.uses_y, len(spec.arith.segments)) == (uses_y, 1 if uses_y else 2)
    for tau, uses_y in ((4, 1), (2, 0)):            # Q = 3 and Q = 7
        layer = softmax_layer(rng, f"agq{tau}")
        spec = lower_values(W4_NARROW_Y, layer, (2, 20, 50), (2, 50, 8), "attn")
        assert spec.arith.loops.uses_y == uses_y
        assert len(spec.arith.segments) == (1 if tau == 2 else 2) * (1 if uses_y else 2)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("softmax", ["agq1", "agq2", "agq4", "uniform"])
def test_attention_scores_and_values_equal_the_reference(config, softmax):
    rng = np.random.default_rng([len(config), int(softmax[-1]) if softmax[-1].isdigit() else 0])
    layer = softmax_layer(rng, softmax)
    p = codes(rng, (2, 3, 20, 50))
    acc = attention_values(probability_operands(layer.softmax, p), codes(rng, (2, 3, 50, 8)), layer.v.zero_point)
    layer = with_fitted_shift(layer, acc)
    for extreme in EXTREMES:
        q, k, v = (codes(rng, s, extreme=extreme) for s in ((2, 3, 20, 8), (2, 3, 50, 8), (2, 3, 50, 8)))
        p = codes(rng, (2, 3, 20, 50), extreme=extreme)
        scores = run_one(CONFIGS[config], layer, "scores", {"q": q, "k": k})["scores"]
        assert np.array_equal(scores, attention_scores(q, layer.q.zero_point, k, layer.k.zero_point))
        out = run_one(CONFIGS[config], layer, "values", {"probs": p, "v": v})["output"]
        assert np.array_equal(out, run_attention_values(layer, p, v)), extreme


def _pe_row_sums(sm: AgqCodes, prob_codes: np.ndarray) -> np.ndarray:
    """Per row, the sum over keys of the PE's A.V term 2^(Q - code div tau) (codes past Q give 0)."""
    c = np.asarray(prob_codes, np.int64)
    live = (c < sm.zero_code) & (c // sm.tau <= sm.max_shift)
    return np.where(live, 1 << np.clip(sm.max_shift - c // sm.tau, 0, None), 0).sum(-1)


@pytest.mark.parametrize("tau,max_shift", [(1, 14), (2, 7), (4, 3)])
def test_softmax_rows_stay_within_the_av_bound_which_is_tight(tau, max_shift):
    """A softmax row's codes, from the host's float step and from the integer unit, never sum past
    ``softmax_row_bound``; equal logits over 64 keys just below a rounding boundary reach it to 1%."""
    rng = np.random.default_rng(tau)
    keys = 64
    layer = with_field(attention_layer(rng, tau, max_shift, keys, dim=8), "q.scale", 0.35)
    worst = 0.0
    for scale in (2.0 ** ((tau - 0.5 - 0.004) / tau) / keys, 0.05, 0.3, 1.0):
        sm = dataclasses.replace(layer.softmax, scale=scale)
        scaled = with_field(layer, "softmax", sm)
        spreads = [0, 1, 30, 300, 3000]
        scores = np.stack([rng.integers(-s, s + 1, (1, 8, keys)) for s in spreads])
        for prob_codes in (probabilities_from_scores(scaled, scores, None), LogSoftmax.of(scaled).codes(scores)):
            sums = _pe_row_sums(sm, prob_codes)
            bound = softmax_row_bound(sm, keys)
            assert sums.max() <= bound, (scale, sums.max(), bound)
            worst = max(worst, sums.max() / bound)
    assert worst >= 0.99


def test_av_sums_bounded_by_the_softmax_fit_narrow_accumulators():
    """4,096 keys at tau = 1: the keys' bound needs 31-bit PE sums, the softmax's 20; the layer compiles
    for 22-bit accumulators and equals the reference on softmax codes, and is refused when a small scale
    lets the sum grow."""
    rng = np.random.default_rng(21)
    keys, narrow = 4096, dataclasses.replace(PRESETS["w4-16x16"], pe_acc_bits=22)
    layer = with_field(attention_layer(rng, 1, 14, keys, value_zero=8, dim=16), "softmax.scale", 0.6)
    layer = with_field(layer, "q.scale", 0.35)
    q, k, v = codes(rng, (1, 1, 16, 16)), codes(rng, (1, 1, keys, 16)), codes(rng, (1, 1, keys, 16))
    p = probabilities_from_scores(layer, attention_scores(q, layer.q.zero_point, k, layer.k.zero_point), None)
    layer = with_fitted_shift(layer, attention_values(probability_operands(layer.softmax, p), v, layer.v.zero_point))
    assert np.array_equal(run_one(narrow, layer, "values", {"probs": p, "v": v})["output"],
                          run_attention_values(layer, p, v))
    small = with_field(layer, "softmax.scale", 0.01)
    assert "an A.V sum can reach" in refusal(narrow, small, "values", {"probs": p.shape, "v": v.shape})


def test_small_buffers_split_jobs_and_runs():
    """On TINY with 24 instructions a unit, a linear layer needs row and column chunks and more than one run
    of the core."""
    rng = np.random.default_rng(5)
    layer = linear_layer(rng, "cag", 72, 40)
    config = dataclasses.replace(TINY, prog_words=24)
    program = compile_layer(config, layer, None, {"input": (3, 37, 72)})
    inv = program.invocations[0]
    assert len(inv.parts) > 1 and inv.gemms > 10
    assert all(len(getattr(p, u)) <= config.prog_words for p in inv.parts for u in ("load", "compute", "store"))


def test_whole_buffers_where_half_buffers_would_move_more_words():
    """On TINY, half buffers take the linear layer in 40 jobs that move 4,100 words, whole buffers in 20 that
    move 2,660: the compiler takes the whole buffers (no overlap, fewer words), and the results still equal
    sw/ref. Where halves move no more words, they stay (the w4-16x16 core's depthwise conv)."""
    rng = np.random.default_rng(5)
    layer = linear_layer(rng, "cag", 72, 40)
    x = codes(rng, (3, 37, 72))
    layer = with_fitted_shift(layer, linear_accumulator(layer, x))
    spec = InvocationSpec.of(layer, None, {"input": x.shape})
    lowered = lower_linear(TINY, layer, x.shape, "fc")
    assert [words_moved(plan_rows(TINY, lowered, slots)) for slots in (2, 1)] == [4100, 2660]
    assert plan_invocation(TINY, layer, spec).slots == 1
    program = compile_layer(TINY, layer, None, {"input": x.shape})
    assert np.array_equal(program.run(program.invocations[0].key, {"input": x})["output"], run_linear(layer, x))
    conv = conv_layer(rng, 32, 32, 3, stride=1, padding=1, groups=32)
    conv_spec = InvocationSpec.of(conv, None, {"input": (1, 32, 16, 16)})
    assert plan_invocation(CONFIGS["w4"], conv, conv_spec).slots == 2


def test_rows_load_once_when_every_columns_weights_stay_loaded():
    """The OUT half holds 2 of the 10 column blocks for a chunk of 32 rows, but every column's weights and
    constants fit their halves: they stay loaded while each row chunk meets all 5 column chunks, so the
    rows are read from memory once (not 5 times), and the results still equal sw/ref."""
    config = CoreConfig(rows=4, cols=4, act_words=512, wgt_words=256, out_words=128, param_words=128, prog_words=128)
    rng = np.random.default_rng(11)
    layer = linear_layer(rng, "cag", 72, 40)
    x = codes(rng, (3, 37, 72))
    layer = with_fitted_shift(layer, linear_accumulator(layer, x))
    plan = plan_rows(config, lower_linear(config, layer, x.shape, "fc"), 2)     # half buffers
    loads = moved_words(plan)
    rows_padded = 128                                          # 3 x 37 rows, in chunks of 32
    assert loads["act"] == 72 * rows_padded // config.codes_per_act_word
    assert loads["wgt"] == 10 * 72 // config.vectors_per_wgt_word   # every column block once
    assert len(plan.jobs) == 4 * 5
    program = compile_layer(config, layer, None, {"input": x.shape})
    assert np.array_equal(program.run(program.invocations[0].key, {"input": x})["output"], run_linear(layer, x))


def test_four_bit_codes_leave_four_rows_to_a_word():
    """4-bit output codes are written as 4-bit elements and packed: a row of 16 is 64 bits, so one
    256-bit word holds 4 rows and the 112 padded rows x 3 column blocks leave in 84 words (336 with a
    word per row, as before). A 4x4 array's rows of 4 codes are not packed (16 rows of 16 bits to a
    word, more than a tile's 4 rows). The results equal sw/ref."""
    rng = np.random.default_rng(13)
    layer = linear_layer(rng, "uniform", 72, 40, output="codes")
    x = codes(rng, (3, 37, 72))
    layer = with_fitted_shift(layer, linear_accumulator(layer, x))
    config = PRESETS["w4-16x16"]
    program = compile_layer(config, layer, None, {"input": x.shape})
    inv = program.invocations[0]
    stored = sum(i.rows * i.row_words for part in inv.parts for i in part.decoded("store") if i.opcode == Opcode.STORE)
    assert (inv.outputs["output"].bits, inv.outputs["output"].params["rows_per_word"]) == (4, 4)
    assert stored == 112 * 3 // 4 == inv.outputs["output"].words
    assert np.array_equal(program.run(inv.key, {"input": x})["output"], run_linear(layer, x))
    tiny = compile_layer(TINY, layer, None, {"input": x.shape}).invocations[0]
    assert "rows_per_word" not in tiny.outputs["output"].params


def test_attention_items_store_their_real_rows_only():
    """6 (window, head) items of 20 queries: the tiles pad each to 32 rows, but memory keeps 20, so the
    scores (16-bit, 4 column blocks) leave in 6 x 20 x 4 words, not 6 x 32 x 4, and the packed 4-bit A.V
    outputs in 6 x 20 / 4 words, not 6 x 32 / 4. Both equal sw/ref."""
    rng = np.random.default_rng(14)
    layer = softmax_layer(rng, "agq2")
    q, k, v, p = (codes(rng, s) for s in ((2, 3, 20, 8), (2, 3, 50, 8), (2, 3, 50, 8), (2, 3, 20, 50)))
    layer = with_fitted_shift(layer, attention_values(probability_operands(layer.softmax, p), v, layer.v.zero_point))
    for op, inputs, words in (("scores", {"q": q, "k": k}, 6 * 20 * 4), ("values", {"probs": p, "v": v}, 6 * 20 // 4)):
        program = compile_layer(PRESETS["w4-16x16"], layer, op, {n: x.shape for n, x in inputs.items()})
        inv = program.invocations[0]
        stored = sum(i.rows * i.row_words for part in inv.parts for i in part.decoded("store")
                     if i.opcode == Opcode.STORE)
        assert stored == words == sum(r.words for r in inv.outputs.values()), op
        result = next(iter(program.run(inv.key, inputs).values()))
        expect = (attention_scores(q, layer.q.zero_point, k, layer.k.zero_point) if op == "scores"
                  else run_attention_values(layer, p, v))
        assert np.array_equal(result, expect), op


def test_a_depthwise_conv_trades_channels_per_job_for_taller_bands():
    """A 3x3 depthwise conv whose OUT half holds 2 output rows of one channel block or 1 row of two: a
    band of 2 output rows reads 4 input rows (2 per output row), a band of 1 reads 3, and depthwise
    channels share nothing, so the planner takes one channel block and bands of 2. A band is the words
    its 4 padded rows of 18 codes span from where it starts in a word (rows are not padded to words):
    400 ACT words, where rows of a word each took 512. The results still equal sw/ref."""
    config = CoreConfig(rows=4, cols=4, act_words=64, wgt_words=64, out_words=64, param_words=64, prog_words=256)
    rng = np.random.default_rng(12)
    layer = conv_layer(rng, 16, 16, 3, stride=1, padding=1, groups=16)
    x = codes(rng, (1, 16, 16, 16))
    layer = with_fitted_shift(layer, conv_accumulator(layer, x).transpose(0, 2, 3, 1))
    plan = plan_conv(config, lower_conv(config, layer, x.shape, "conv"), 2)     # half buffers
    row, per_word = 16 + 2, 32
    band_words = [-(-(y0 * row % per_word + 4 * row) // per_word) for y0 in range(0, 16, 2)]
    assert moved_words(plan)["act"] == 16 * sum(band_words) == 400
    program = compile_layer(config, layer, None, {"input": x.shape})
    assert np.array_equal(program.run(program.invocations[0].key, {"input": x})["output"], run_conv(layer, x))


# ---- refusals -------------------------------------------------------------------------------------

def refusal(config, layer, op, shapes) -> str:
    with pytest.raises(CompileError) as info:
        compile_layer(config, layer, op, shapes)
    message = str(info.value)
    assert "\n" not in message and message.startswith(layer.name)
    return message


def test_refusals_are_one_line_naming_the_layer_and_the_limit():
    rng = np.random.default_rng(7)
    w4, w8 = PRESETS["w4-16x16"], PRESETS["w8-16x16"]
    shape = {"input": (5, 72)}
    wide = linear_layer(rng, "uniform", 72, 40, act_bits=4, weight_bits=8)
    assert "weights are 8-bit codes, the core stores 4 (weight_bits)" in refusal(w4, wide, None, shape)
    wide_in = linear_layer(rng, "uniform", 72, 40, act_bits=8)
    assert "inputs are 8-bit codes, the core stores 4 (act_bits)" in refusal(w4, wide_in, None, shape)
    hluq = linear_layer(rng, "hluq", 72, 40, log_levels=4)
    assert "shifts by up to 3, the core's PEs by 2 (max_shift)" in refusal(
        dataclasses.replace(w8, max_shift=2), hluq, None, shape)
    cag = linear_layer(rng, "cag", 72, 40)
    assert "4 channel-group runs, the core combines at most 2 segments (max_segments)" in refusal(
        dataclasses.replace(w8, max_segments=2), cag, None, shape)
    assert "cag inputs, which this core does not include" in refusal(
        dataclasses.replace(w8, formats=("uniform", "hluq", "agq")), cag, None, shape)
    big_m = with_field(cag, "group_multiplier", np.array([2**33, 1, 1, 1]))
    assert "group multiplier 8589934592 needs 34 bits, the lanes multiply by 32" in refusal(w8, big_m, None, shape)
    assert "the PE accumulators hold 8 (pe_acc_bits)" in refusal(dataclasses.replace(w8, pe_acc_bits=8), cag, None,
                                                                   shape)
    attn = attention_layer(rng, 2, 7, keys=50, dim=8)
    values = {"probs": (1, 1, 4, 50), "v": (1, 1, 50, 8)}
    assert "AGQ shifts by up to 7, the core's PEs by 5 (max_shift)" in refusal(
        dataclasses.replace(w8, max_shift=5), attn, "values", values)
    fine_lut = AgqCodes(act_bits=4, tau=2, scale=1.0, max_shift=7, lut_frac_bits=31,
                        lut=np.array([2**31, round(2**31 * 2**-0.5)]))
    long = {"probs": (1, 1, 4, 2**16), "v": (1, 1, 2**16, 8)}
    assert "the lanes hold 48 signed bits" in refusal(w8, with_field(attn, "softmax", fine_lut), "values", long)
    small = dataclasses.replace(TINY, act_words=4)
    assert "ACT words (the core has 4 per buffer)" in refusal(small, cag, None, shape)
    assert "the core holds 3 (prog_words)" in refusal(dataclasses.replace(w8, prog_words=3), cag, None, shape)
    with pytest.raises(CompileError, match="input of shape \\[5, 71\\] does not end in the layer's 72 inputs"):
        compile_layer(w8, cag, None, {"input": (5, 71)})


# ---- programs --------------------------------------------------------------------------------------

def small_program(config=PRESETS["w8-16x16"]):
    rng = np.random.default_rng(11)
    linear = linear_layer(rng, "hluq", 40, 24, name="lin")
    attn = attention_layer(rng, 4, 3, keys=30, dim=8, name="attn")
    specs = [(InvocationSpec.of(linear, None, {"input": (2, 9, 40)}), linear),
             (InvocationSpec.of(attn, "scores", {"q": (2, 1, 9, 8), "k": (2, 1, 30, 8)}), attn),
             (InvocationSpec.of(attn, "values", {"probs": (2, 1, 9, 30), "v": (2, 1, 30, 8)}), attn)]
    return build_program(config, specs, {"model": "synthetic"}), linear, attn


def test_programs_are_deterministic_and_round_trip(tmp_path):
    a, linear, attn = small_program()
    b, _, _ = small_program()
    assert np.array_equal(a.image, b.image)
    assert [inv.parts for inv in a.invocations] == [inv.parts for inv in b.invocations]
    write_program(a, tmp_path / "a")
    write_program(b, tmp_path / "b")
    for name in ("manifest.json", "program.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    loaded = load_program(tmp_path / "a", PRESETS["w8-16x16"])
    x = np.random.default_rng(0).integers(0, 16, (2, 9, 40))
    key = loaded.invocations[0].key
    assert key == a.invocations[0].key
    assert np.array_equal(loaded.run(key, {"input": x})["output"], run_linear(linear, x))


def test_a_program_for_another_core_or_a_damaged_one_is_refused(tmp_path):
    program, _, _ = small_program()
    path = write_program(program, tmp_path / "p")
    with pytest.raises(ProgramError, match=r"compiled for core \w+, not this core \w+ \(act_bits 8 vs 4"):
        load_program(path, PRESETS["w4-16x16"])
    data = bytearray((path / "program.npz").read_bytes())
    data[-100] ^= 1
    (path / "program.npz").write_bytes(bytes(data))
    with pytest.raises(ProgramError, match="checksum mismatch"):
        load_program(path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ProgramError, match="schema version 99 is not supported"):
        load_program(path)


def test_regions_refuse_tensors_that_do_not_fit():
    program, _, _ = small_program()
    inv = program.invocations[0]
    memory = program.memory()
    with pytest.raises(ValueError, match=r"takes a tensor of shape \[2, 9, 40\], got \[2, 9, 41\]"):
        inv.write_inputs(memory, 256, input=np.zeros((2, 9, 41), np.int64))
    with pytest.raises(ValueError, match="holds 4-bit codes, got values 16..16"):
        inv.write_inputs(memory, 256, input=np.full((2, 9, 40), 16))


# ---- a real LiteMedSAM bundle ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def litemedsam_bundle(litemedsam, calib_items, tmp_path_factory):
    """AHCPTQ W4A4 statistics-only: CAG, HLUQ and uniform inputs, AGQ with tau 1, 2 and 4, every conv."""
    from sw.export.bundle import export_bundle
    from sw.quant.calibrate import quantize
    from sw.quant.config import make_config

    qmodel, _ = quantize(litemedsam, make_config("ahcptq", "w4a4", recon="none"), calib_items[:1], progress=False)
    return export_bundle(qmodel, calib_items[:1], tmp_path_factory.mktemp("lm") / "bundle", progress=False), qmodel


def test_compile_cli_writes_a_byte_identical_program_that_inspect_checks(litemedsam_bundle, tmp_path):
    bundle_dir, _ = litemedsam_bundle

    def samhw(*args):
        return subprocess.run([sys.executable, "-m", "sw.cli", *args], capture_output=True, text=True, cwd=ROOT)

    first = samhw("compile", str(bundle_dir), "--core", "w8-16x16", "--out", str(tmp_path / "p1"))
    assert first.returncode == 0, first.stderr
    assert "124 invocations" in first.stdout
    samhw("compile", str(bundle_dir), "--core", "w8-16x16", "--out", str(tmp_path / "p2"))
    for name in ("manifest.json", "program.npz"):
        assert (tmp_path / "p1" / name).read_bytes() == (tmp_path / "p2" / name).read_bytes()
    ok = samhw("inspect", str(tmp_path / "p1"), "--core", "w8-16x16", "--against", str(bundle_dir))
    assert ok.returncode == 0 and "124 invocations" in ok.stdout and "all checks passed" in ok.stdout
    other = samhw("inspect", str(tmp_path / "p1"), "--core", "w4-16x16")
    assert other.returncode == 1 and other.stderr.count("\n") == 1 and "not this core" in other.stderr
    refused = samhw("compile", str(bundle_dir), "--core", "w4-16x16x", "--out", str(tmp_path / "p3"))
    assert refused.returncode == 2 and "no such core config file" in refused.stderr


@pytest.fixture(scope="module")
def real_recording(litemedsam_bundle, calib_items):
    """The bundle and its invocations with their real input codes (the reference run on a real image)."""
    import torch

    from hw.compiler.model import Recorder, record_invocations
    from sw.bundle import load_bundle

    bundle_dir, qmodel = litemedsam_bundle
    bundle = load_bundle(bundle_dir)
    item = calib_items[2]
    x, meta = qmodel.preprocess(item.image)
    box = qmodel.boxes_to_input(item.boxes[:1], meta)
    with torch.no_grad():
        recorder = record_invocations(bundle, Recorder(compute=True, keep_inputs=True), x.double().numpy(),
                                      box.double().numpy())
    return bundle, recorder


def test_real_layers_of_every_kind_equal_the_reference(real_recording):
    """Real activations (the reference run on a real image), one invocation of each kind."""
    from hw.compiler.model import bundle_identity, reference_outputs

    bundle, recorder = real_recording
    wanted = ["layers.2.blocks.0.attn.qkv ", "layers.2.blocks.0.attn:scores", "layers.2.blocks.4.attn:values",
              "layers.3.blocks.0.attn:values", "layers.3.blocks.0.mlp.fc2", "layers.3.blocks.0.attn.proj",
              "layers.3.blocks.0.local_conv", "layers.1.downsample.conv2", "layers.2.downsample.conv3", "neck.2",
              "layers.0.self_attn:values", "layers.0.mlp.lin1", "final_attn_token_to_image:scores"]
    chosen = [(spec, layer) for spec, layer in recorder.calls
              if any(w in dataclasses.replace(spec, lookup=None).key for w in wanted)]
    assert len(chosen) == len(wanted)
    assert [spec.lookup.into for spec, _ in chosen if spec.lookup] == ["image_encoder.layers.1.downsample.conv3",
                                                                       "mask_decoder.transformer.layers.0.mlp.lin2"]
    inputs = {spec.layer + (spec.op or ""): {k: v.astype(np.int64) for k, v in recorder.inputs[spec.key].items()}
              for spec, _ in chosen}
    # a core with an output lookup (the W4 ones) writes the depthwise conv2's outputs as conv3's codes and
    # the decoder lin1's as lin2's; the W8 core host codes
    for config in (PRESETS["w8-16x16"], W4_X_ONLY, PRESETS["w4-16x16"]):
        program = build_program(config, chosen, bundle_identity(bundle))
        assert len(program.invocations) == len(wanted)
        assert sum(inv.spec.lookup is not None for inv in program.invocations) == 2 * bool(config.lookup_steps)
        for inv in program.invocations:
            layer = bundle.layers[inv.spec.layer]
            x = inputs[inv.spec.layer + (inv.spec.op or "")]
            feeds = (inv.spec.lookup.step, recorder.feeds[layer.name]) if inv.spec.lookup else None
            want = reference_outputs(layer, inv.spec.op, x, feeds)
            got = program.run(inv.key, x)
            assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want), (config.digest,
                                                                                                      inv.key)


def test_code_map_steps_give_back_any_code_map():
    """Base plus +-1 steps (a jump of d: |d| steps at one threshold) reproduce a code map exactly."""
    from hw.core.isa import LookupStep, lookup
    from sw.ref.code_map import CodeMap

    rng = np.random.default_rng(3)
    for _ in range(20):
        codes = np.clip(np.cumsum(rng.choice([-2, -1, 0, 0, 0, 0, 1, 3], 300)), 0, 15)
        code_map = CodeMap(-150, codes)
        base, steps = code_map.steps()
        host = np.arange(-150, 150)
        assert np.array_equal(lookup(host, base, [LookupStep(t, d) for t, d in steps]), codes)
        assert np.array_equal(code_map(host), codes)
        assert len(steps) == int(np.abs(np.diff(codes)).sum())


def test_outputs_an_elementwise_step_reads_map_one_code_to_one_code(real_recording):
    """``output_reader`` names the host step after each output. Where it says GELU or ReLU, the next
    layer's real input codes are a function of this layer's output codes, element by element (what a
    lookup on the accelerator could compute); a residual add's output (``host``) is not."""
    from hw.compiler.model import output_reader
    from hw.core.isa import LookupStep, lookup
    from sw.ref.code_map import elementwise_code_map
    from sw.ref.layers import run_layer

    bundle, recorder = real_recording
    calls = recorder.calls
    read_by = {spec.key: output_reader(layer, spec.op, recorder.elementwise) for spec, layer in calls}
    by_name = lambda part: {r for k, r in read_by.items() if part in k.split(" ")[0]}
    assert by_name("mlp.fc1") == {"gelu"} and by_name("downsample.conv1") == by_name("downsample.conv2") == {"gelu"}
    assert by_name("mask_decoder.transformer.layers.0.mlp.lin1") == {"relu"} and by_name(":scores") == {"softmax"}
    assert by_name("attn.qkv") == by_name(":values") == {"codes"}
    assert by_name("mlp.fc2") == by_name("attn.proj") == {"host"}

    def function_of(out, codes):   # each output code meets one input code only
        pairs = np.unique(np.stack([out.ravel(), codes.ravel()]), axis=1)
        return pairs.shape[1] == np.unique(out).size

    elementwise = mixed = 0
    steps = {}
    for (spec, layer), (nxt, nxt_layer) in zip(calls, calls[1:]):
        if spec.op is not None or read_by[spec.key] == "codes":
            continue
        out = run_layer(layer, recorder.inputs[spec.key]["input"].astype(np.int64))
        codes = recorder.inputs[nxt.key].get("input")
        if read_by[spec.key] in ("gelu", "relu"):
            assert codes is not None and codes.size == out.size and function_of(out, codes), spec.key
            assert recorder.feeds[spec.layer] is nxt_layer
            # sw.ref's code map is that function, and the core's lookup steps are the code map, exactly
            code_map = elementwise_code_map(layer, read_by[spec.key], nxt_layer)
            if code_map is not None:
                assert np.array_equal(code_map(out), codes.reshape(out.shape)), spec.key
                base, found = code_map.steps()
                host = np.arange(layer.output.q_min, layer.output.q_max + 1)
                assert np.array_equal(lookup(host, base, [LookupStep(t, d) for t, d in found]), code_map.codes)
                steps[spec.layer] = len(found)
            elementwise += 1
        elif codes is not None and codes.size == out.size:     # a residual add or LayerNorm lies between
            assert not function_of(out, codes), spec.key
            mixed += 1
    assert elementwise == sum(r in ("gelu", "relu") for r in read_by.values()) >= 10 and mixed >= 1
    # the bundle's MLPs have HLUQ inputs: every GELU / ReLU boundary but those into CAG layers has a map,
    # and each takes a few dozen steps at most (CoreConfig.lookup_steps sizes the core for it)
    assert len(steps) >= 10 and max(steps.values()) <= 32, steps
    assert sum(n <= PRESETS["w4-16x16"].lookup_steps for n in steps.values()) >= len(steps) // 2


def _model_inputs(qmodel, item) -> tuple[np.ndarray, np.ndarray]:
    """A calibration item's image and first box as the model graph takes them (float64)."""
    import torch

    x, meta = qmodel.preprocess(item.image)
    with torch.no_grad():
        box = qmodel.boxes_to_input(item.boxes[:1], meta).double().numpy()
    return x.double().numpy(), box


def test_the_runtime_takes_the_next_layers_codes_from_the_core_where_it_has_a_lookup(litemedsam_bundle, calib_items,
                                                                                        tmp_path):
    """The patch merging and a decoder MLP on the W4 core's functional model: conv1, conv2 and lin1 run
    with their output lookups, the host skips those GELUs / ReLU, and the masks are sw/ref's bit for bit;
    a stored program keeps its lookups."""
    from hw.compiler.model import bundle_identity, record_invocations
    from hw.compiler.store import load_program, write_program
    from hw.runtime import FsimBackend, reference_model, run_model
    from hw.runtime.threads import single_blas_thread
    from sw.bundle import load_bundle

    bundle_dir, qmodel = litemedsam_bundle
    bundle = load_bundle(bundle_dir)
    prefixes = ("image_encoder.layers.1.downsample.", "mask_decoder.transformer.layers.0.mlp.")
    calls = [c for c in record_invocations(bundle).calls if c[0].layer.startswith(prefixes)]
    program = build_program(PRESETS["w4-16x16"], calls, bundle_identity(bundle))
    looked_up = sorted(inv.spec.layer.rsplit(".", 1)[1] for inv in program.invocations if inv.spec.lookup)
    assert looked_up == ["conv1", "conv2", "lin1"]
    program = load_program(write_program(program, tmp_path / "program"), PRESETS["w4-16x16"], bundle)
    assert sorted(inv.spec.layer.rsplit(".", 1)[1] for inv in program.invocations if inv.spec.lookup) == looked_up
    x, box = _model_inputs(qmodel, calib_items[2])
    with single_blas_thread():
        run = run_model(bundle, program, FsimBackend(), x, box, offload=lambda layer, op: layer.startswith(prefixes))
        embedding, logits, iou = reference_model(bundle, x, box)
    assert len(run.offloaded()) == len(program.invocations) == 5 and run.mismatches == 0 and run.ok
    assert run.elements > 100_000
    assert np.array_equal(run.embedding, embedding) and np.array_equal(run.logits, logits)


def test_the_runtime_takes_the_softmax_codes_from_the_core_where_it_has_the_path(litemedsam_bundle, calib_items,
                                                                                 tmp_path):
    """The decoder's first two-way block on a W4 core with the softmax path (functional model): its
    token-to-image attention (rows of 4,096 keys) runs QK^T with the softmax on chip (``probs``), the two
    with rows of 7 keys keep the host's softmax, and the masks equal sw/ref's with the integer softmax at
    that layer, bit for bit."""
    from hw.compiler.model import bundle_identity, model_calls
    from hw.runtime import FsimBackend, reference_model, run_model
    from hw.runtime.threads import single_blas_thread
    from sw.bundle import load_bundle

    bundle_dir, qmodel = litemedsam_bundle
    bundle = load_bundle(bundle_dir)
    config = dataclasses.replace(PRESETS["w4-16x16"], softmax_lanes=2)
    prefix = "mask_decoder.transformer.layers.0."
    calls = [c for c in model_calls(bundle, config) if c[0].layer.startswith(prefix)]
    program = build_program(config, calls, bundle_identity(bundle))
    fused = sorted(inv.spec.layer[len(prefix):] for inv in program.invocations if inv.spec.op == "probs")
    assert fused == ["cross_attn_token_to_image"]
    assert sorted(inv.spec.layer[len(prefix):] for inv in program.invocations if inv.spec.op == "scores") == [
        "cross_attn_image_to_token", "self_attn"]
    program = load_program(write_program(program, tmp_path / "program"), config, bundle)
    x, box = _model_inputs(qmodel, calib_items[2])
    with single_blas_thread():
        run = run_model(bundle, program, FsimBackend(), x, box, offload=lambda layer, op: layer.startswith(prefix))
        _, logits, iou = reference_model(bundle, x, box, program=program)
        _, host_logits, _ = reference_model(bundle, x, box)
    probs = [r for r in run.offloaded() if r.op == "probs"]
    assert len(probs) == 1 and probs[0].mismatches == 0 and probs[0].elements == 8 * 7 * 4096 and run.ok
    assert np.array_equal(run.logits, logits) and np.array_equal(run.iou, iou)
    assert not np.array_equal(logits, host_logits)     # the on-chip softmax is the integer one, not the host's


def test_compiler_and_functional_model_run_without_torch():
    from torchless import run_without_torch

    code = """
import sys
sys.path.insert(0, "tests")
import numpy as np
from hw.compiler import compile_layer
from hw.compiler.model import record_invocations
from hw.compiler.store import load_program
from hw.core.config import PRESETS
from sw.ref.layers import run_linear
from synthetic_layers import linear_layer
layer = linear_layer(np.random.default_rng(0), "cag", 24, 20)
x = np.random.default_rng(1).integers(0, 16, (5, 24))
program = compile_layer(PRESETS["w4-16x16"], layer, None, {"input": x.shape})
assert np.array_equal(program.run(program.invocations[0].key, {"input": x})["output"], run_linear(layer, x))
assert "torch" not in sys.modules
print("ok")
"""
    result = run_without_torch(code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
