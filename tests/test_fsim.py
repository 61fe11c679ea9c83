"""The functional model (hw/fsim) against hand-written programs whose results are computed here
independently: a scalar Python-integer transcription of docs/core.md's GEMM pseudo-code, explicit bit
positions of the storage formats, and token programs that must deadlock or race."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hw.core.config import CoreConfig
from hw.core.isa import element_bits as bits_of
from hw.core.isa import (OUT_WIDTHS, Buffer, ColumnSlot, DescActStrides, DescLoops, DescOtherStrides, Gemm, Instruction,
                         Mode, Opcode, Segment, Transfer)
from hw.core.streams import Streams
from hw.fsim import (Descriptor, FsimError, decode_descriptor, pack_codes, pack_descriptor, pack_entries,
                     pack_out_rows, requantize, run, unpack_codes, unpack_out_rows)
from hw.fsim.layout import bias_table_words, pack_bias_tables, unpack_bias_table
from sw.ref.arith import requantize as ref_requantize

SMALL = CoreConfig(rows=4, cols=4, act_bits=8, weight_bits=8, act_words=64, wgt_words=64, out_words=256,
                   param_words=32, prog_words=64, max_shift=15, pe_acc_bits=40, max_segments=4)
SMALL4 = dataclasses.replace(SMALL, act_bits=4, weight_bits=4)


# ---- storage formats ----------------------------------------------------------------------------

def test_code_and_row_vector_bit_positions():
    assert pack_codes(np.array([1, 2, 3]), 4, 256)[:3].tolist() == [0x21, 0x03, 0]
    assert pack_codes(np.array([7, 200]), 8, 256)[:3].tolist() == [7, 200, 0]
    assert pack_codes(np.arange(3), 8, 256).size == 32                 # whole words
    assert unpack_codes(np.array([0x21, 0x03], np.uint8), 4).tolist() == [1, 2, 3, 0]
    rows = pack_out_rows(np.array([[1, -1, 2, -2]]), 16, 256)
    assert rows.shape == (1, 32)
    assert rows[0, :8].tolist() == [1, 0, 0xFF, 0xFF, 2, 0, 0xFE, 0xFF] and not rows[0, 8:].any()
    assert pack_out_rows(np.zeros((1, 16)), 32, 256).shape == (1, 64)  # 512 bits: two words
    assert unpack_out_rows(rows, 4, 16, signed=True).tolist() == [[1, -1, 2, -2]]
    assert unpack_out_rows(rows, 4, 16, signed=False).tolist() == [[1, 65535, 2, 65534]]
    nibbles = pack_out_rows(np.array([[1, -1, 7, -8, 5]]), 4, 256)    # element k: nibble k, low first
    assert nibbles[0, :4].tolist() == [0xF1, 0x87, 0x05, 0] and not nibbles[0, 3:].any()
    assert unpack_out_rows(nibbles, 5, 4, signed=True).tolist() == [[1, -1, 7, -8, 5]]
    assert unpack_out_rows(nibbles, 5, 4, signed=False).tolist() == [[1, 15, 7, 8, 5]]
    with pytest.raises(ValueError, match="outside 0..15"):
        pack_codes(np.array([16]), 4, 256)


def test_descriptor_round_trips_through_param_words():
    desc = Descriptor(DescLoops(mode=Mode.AGQ, raw=0, out_width=2, tau_log2=2, max_shift=3, zero_code=15,
                                log_levels=0, n_seg=3, uses_y=1, q_min=-5, q_max=2**32 - 1, n_ob=2, n_c=3, n_i=2,
                                n_d=1),
                      DescActStrides(b=-7, rb=4, ob=0, c=9, i=1, d=0),
                      DescOtherStrides(wgt_b=5, wgt_ob=-3, out_b=8, out_ob=1, out_rb=4, out_row=1, col_b=0, col_ob=4),
                      tuple(Segment(j_start=s, j_len=2, zero_point=s, residue_pass=s % 2, m_x=2**32 - 1 - s, m_y=s)
                            for s in range(3)))
    words = pack_descriptor(desc, 256)
    assert words.size == 5 * 32                                          # 3 fixed words + 3 segments, 2 per word
    param = np.concatenate([np.zeros(64, np.uint8), words])
    assert decode_descriptor(param, 2, 256) == desc


def test_grid_bias_tables_round_trip_through_param_words():
    tables = np.random.default_rng(3).integers(-2**15, 2**15, (2, 5, 5))
    words = bias_table_words(5, 256)
    assert words == 13                                                   # 25 entries, 2 slots a word
    param = np.concatenate([np.zeros(3 * 32, np.uint8), pack_bias_tables(tables, 256)])
    assert param.size == (3 + 2 * words) * 32
    for head in range(2):
        assert np.array_equal(unpack_bias_table(param, 3 + head * words, 5, 256), tables[head])
    # entry e sits in the low 16 bits of slot e: entry 1 of head 0 at byte 16 of the table's first word
    assert int(param[3 * 32 + 16:3 * 32 + 18].view("<i2")[0]) == tables[0, 0, 1]


def test_requantize_matches_reference_and_python_integers():
    rng = np.random.default_rng(0)
    acc = np.concatenate([rng.integers(-2**47 + 1, 2**47, 2000), [-2**47 + 1, 2**47 - 1, 0, 1, -1]])
    mult = rng.integers(2**30, 2**31, acc.size)
    shift = rng.integers(17, 79, acc.size)
    assert np.array_equal(requantize(acc, mult, shift, 3, -2**40, 2**40),
                          ref_requantize(acc, mult, shift, 3, -2**40, 2**40))
    shift = rng.integers(0, 128, acc.size)
    expect = [min(max(((int(a) * int(m) + ((1 << (int(s) - 1)) if s else 0)) >> int(s)) - 2, -2**32), 2**32 - 1)
              for a, m, s in zip(acc, mult, shift)]
    assert requantize(acc, mult, shift, -2, -2**32, 2**32 - 1).tolist() == expect


# ---- a scalar transcription of the GEMM pseudo-code ---------------------------------------------

def row_terms(code: int, w: int, loops: DescLoops, seg: Segment) -> tuple[int, int]:
    if loops.mode == Mode.MAC:
        return w * (code - seg.zero_point), 0
    if loops.mode == Mode.HLUQ:
        levels = loops.log_levels
        if code == 0:
            return 0, 0
        if code <= levels:
            return w << (code - 1), 0
        return w << (levels - 1), w * (code - levels)
    tau = 1 << loops.tau_log2
    e, r = divmod(code, tau)
    if code == loops.zero_code or e > loops.max_shift:
        return 0, 0
    term = w << (loops.max_shift - e)
    if tau == 1 or r == 2 * seg.residue_pass:
        return term, 0
    return (0, term) if r == 2 * seg.residue_pass + 1 else (0, 0)


def scalar_gemm(cfg: CoreConfig, inst: Gemm, desc: Descriptor, act: list[int], wgt: list[int],
                slots: dict[int, ColumnSlot]) -> dict[int, list[int]]:
    """OUT word of each written row vector -> its K values, in pseudo-code order (later writes win)."""
    loops, sa, so = desc.loops, desc.act, desc.other
    out = {}
    for b in range(inst.n_batch):
        for ob in range(loops.n_ob):
            for rb in range(inst.n_rb):
                col = [slots[inst.col_base + b * so.col_b + ob * so.col_ob + k] for k in range(cfg.cols)]
                acc = [[col[k].bias for k in range(cfg.cols)] for _ in range(cfg.rows)]
                result = [[0] * cfg.cols for _ in range(cfg.rows)]
                for seg in desc.segments:
                    x = [[0] * cfg.cols for _ in range(cfg.rows)]
                    y = [[0] * cfg.cols for _ in range(cfg.rows)]
                    for j in range(seg.j_start, seg.j_start + seg.j_len):
                        c = j // (loops.n_i * loops.n_d)
                        i = (j // loops.n_d) % loops.n_i
                        d = j % loops.n_d
                        a = inst.act_base + b * sa.b + rb * sa.rb + ob * sa.ob + c * sa.c + i * sa.i + d * sa.d
                        v = inst.wgt_base + b * so.wgt_b + ob * so.wgt_ob + j
                        for r in range(cfg.rows):
                            for k in range(cfg.cols):
                                tx, ty = row_terms(act[a + r], wgt[v * cfg.cols + k] - col[k].zero_point, loops, seg)
                                x[r][k] += tx
                                y[r][k] += ty
                    for r in range(cfg.rows):
                        for k in range(cfg.cols):
                            if loops.raw:
                                result[r][k] = x[r][k]
                            else:
                                acc[r][k] += seg.m_x * x[r][k] + (seg.m_y * y[r][k] if loops.uses_y else 0)
                for r in range(cfg.rows):
                    if not loops.raw:
                        for k in range(cfg.cols):
                            s = col[k].shift
                            value = (acc[r][k] * col[k].multiplier + ((1 << (s - 1)) if s else 0)) >> s
                            result[r][k] = min(max(value + col[k].out_zero_point, loops.q_min), loops.q_max)
                    word = inst.out_base + b * so.out_b + ob * so.out_ob + rb * so.out_rb + r * so.out_row
                    out[word] = result[r]
    return out


# ---- building one-GEMM programs -----------------------------------------------------------------

def transfer(op, buffer, buf_addr, ext_addr, words, **flags) -> Transfer:
    fields = dict(wait_prev=0, wait_next=0, signal_prev=0, signal_next=0)
    fields.update(flags)
    return Transfer(opcode=op, buffer=buffer, buf_addr=buf_addr, ext_addr=ext_addr, rows=1, row_words=words,
                    ext_stride=0, buf_stride=0, **fields)


def gemm(**fields) -> Gemm:
    base = dict(opcode=Opcode.GEMM, wait_prev=0, wait_next=0, signal_prev=0, signal_next=0, desc_addr=0, act_base=0,
                wgt_base=0, out_base=0, col_base=0, n_batch=1, n_rb=1)
    base.update(fields)
    return Gemm(**base)


def one_gemm_program(cfg: CoreConfig, inst: Gemm, desc: Descriptor, act: np.ndarray, wgt: np.ndarray,
                     slots: list[ColumnSlot], slot_base: int):
    """Memory [PARAM image | ACT image | WGT image | OUT copy] and the streams that load, run, store."""
    bb = cfg.bus_bytes
    param = np.zeros(cfg.param_words * bb, np.uint8)
    d = pack_descriptor(desc, cfg.bus_bits)
    param[inst.desc_addr * bb:inst.desc_addr * bb + d.size] = d
    s = pack_entries(slots, cfg.bus_bits)
    param[slot_base * 16:slot_base * 16 + s.size] = s                  # 128-bit slots, slot_base even
    images = [param, pack_codes(act, cfg.act_bits, cfg.bus_bits), pack_codes(wgt, cfg.weight_bits, cfg.bus_bits)]
    starts = np.cumsum([0] + [im.size // bb for im in images])
    # random_case writes its row vectors densely from OUT word 0
    out_used = max(inst.n_batch * desc.loops.n_ob * inst.n_rb * cfg.rows * desc.other.out_row,
                   cfg.out_words_per_row(bits_of(desc.loops.out_width)))
    memory = np.concatenate(images + [np.zeros(out_used * bb, np.uint8)])
    load = [transfer(Opcode.LOAD, Buffer.PARAM, 0, int(starts[0]), cfg.param_words),
            transfer(Opcode.LOAD, Buffer.ACT, 0, int(starts[1]), images[1].size // bb),
            transfer(Opcode.LOAD, Buffer.WGT, 0, int(starts[2]), images[2].size // bb, signal_next=1)]
    inst = dataclasses.replace(inst, wait_prev=1, signal_next=1)
    store = [Transfer(opcode=Opcode.STORE, wait_prev=1, wait_next=0, signal_prev=0, signal_next=0, buffer=Buffer.OUT,
                      buf_addr=0, ext_addr=int(starts[3]), rows=1, row_words=out_used, ext_stride=0,
                      buf_stride=0)]
    return Streams.assemble(load, [inst], store), memory, int(starts[3])


def random_case(rng, cfg: CoreConfig, mode: int, raw: bool = False):
    """A random GEMM whose every address stays inside the buffers, with extreme codes mixed in."""
    n_batch, n_ob, n_rb = (int(v) for v in rng.integers(1, 4, 3))
    n_c, n_i, n_d = int(rng.integers(1, 5)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
    total = n_c * n_i * n_d
    strides = {k: int(rng.integers(0, 6)) for k in ("b", "rb", "ob", "c", "i", "d")}
    strides["rb"] = cfg.rows if rng.random() < 0.5 else strides["rb"]
    act_codes = cfg.act_words * cfg.codes_per_act_word
    reach = sum(v * n for v, n in zip(strides.values(), (n_batch, n_rb, n_ob, n_c, n_i, n_d))) + cfg.rows
    act_base = int(rng.integers(0, act_codes - reach))
    if rng.random() < 0.3:                                            # a negative stride, base moved up
        strides["c"] = -strides["c"]
        act_base = act_codes - reach
    top = (1 << cfg.act_bits) - 1
    tau_log2 = int(rng.integers(0, 3)) if mode == Mode.AGQ else 0
    if mode == Mode.AGQ and tau_log2 == 2:
        segments = [(0, total, 0), (0, total, 1)]
    elif mode == Mode.MAC and not raw:
        cuts = sorted(set(rng.integers(0, total + 1, 2).tolist()) | {0, total})
        segments = [(lo, hi - lo, 0) for lo, hi in zip(cuts, cuts[1:])]
    else:
        segments = [(0, total, 0)]
    segs = tuple(Segment(j_start=lo, j_len=n, zero_point=int(rng.integers(0, top + 1)), residue_pass=p,
                         m_x=int(rng.integers(1, 2**16)), m_y=int(rng.integers(1, 2**16)))
                 for lo, n, p in segments)
    element_bits = 32 if raw else int(rng.choice([8, 16, 32]))
    wpr = cfg.out_words_per_row(element_bits)
    q_lo, q_hi = -(1 << (element_bits - 1)), (1 << (element_bits - 1)) - 1
    loops = DescLoops(mode=mode, raw=int(raw), out_width=OUT_WIDTHS[element_bits], tau_log2=tau_log2,
                      max_shift=int(rng.integers(0, 6)) if mode == Mode.AGQ else 0, zero_code=top,
                      log_levels=int(rng.integers(1, 6)) if mode == Mode.HLUQ else 0, n_seg=len(segs),
                      uses_y=int(mode != Mode.MAC), q_min=q_lo, q_max=q_hi, n_ob=n_ob, n_c=n_c, n_i=n_i, n_d=n_d)
    wgt_b, wgt_ob = total * n_ob * int(rng.integers(0, 2)), total
    col_b, col_ob = cfg.cols * n_ob * int(rng.integers(0, 2)), cfg.cols
    other = DescOtherStrides(wgt_b=wgt_b, wgt_ob=wgt_ob, out_b=n_ob * n_rb * cfg.rows * wpr,
                             out_ob=n_rb * cfg.rows * wpr, out_rb=cfg.rows * wpr, out_row=wpr, col_b=col_b,
                             col_ob=col_ob)
    desc = Descriptor(loops, DescActStrides(**strides), other, segs)
    n_vectors = max(wgt_b, 1) * n_batch + wgt_ob * n_ob + total
    act = rng.integers(0, top + 1, act_codes)
    act[rng.random(act_codes) < 0.2] = top
    act[rng.random(act_codes) < 0.1] = 0
    wtop = (1 << cfg.weight_bits) - 1
    wgt = rng.integers(0, wtop + 1, n_vectors * cfg.cols)
    wgt[rng.random(wgt.size) < 0.2] = wtop
    n_slots = max(col_b, 1) * n_batch + col_ob * n_ob + cfg.cols
    # A shift that maps the accumulator's typical size onto the output range, so few outputs clamp.
    term_bits = cfg.weight_bits + {Mode.MAC: cfg.act_bits, Mode.HLUQ: loops.log_levels, Mode.AGQ: loops.max_shift}[mode]
    typical = (max(s.m_x for s in segs) << term_bits) * total
    slots = [ColumnSlot(zero_point=int(rng.integers(0, wtop + 1)), bias=int(rng.integers(-2**20, 2**20)),
                        multiplier=int(rng.integers(2**30, 2**31)),
                        shift=int(np.clip(typical.bit_length() + 32 - element_bits + rng.integers(-2, 3), 17, 78)),
                        out_zero_point=int(rng.integers(-20, 20))) for _ in range(n_slots)]
    slot_base = 2 * (desc.words(cfg.bus_bits) + 1)
    inst = gemm(act_base=act_base, col_base=slot_base, n_batch=n_batch, n_rb=n_rb)
    return inst, desc, act, wgt, slots, slot_base, element_bits


@pytest.mark.parametrize("cfg", [SMALL, SMALL4], ids=["8bit", "4bit"])
@pytest.mark.parametrize("mode,raw", [(Mode.MAC, False), (Mode.MAC, True), (Mode.HLUQ, False), (Mode.AGQ, False)],
                         ids=["mac", "raw", "hluq", "agq"])
def test_random_gemms_equal_the_scalar_pseudocode(cfg, mode, raw):
    rng = np.random.default_rng([int(mode), int(raw), cfg.act_bits])
    for _ in range(10):
        inst, desc, act, wgt, slots, slot_base, bits = random_case(rng, cfg, mode, raw)
        streams, memory, out_at = one_gemm_program(cfg, inst, desc, act, wgt, slots, slot_base)
        after = run(cfg, streams, memory)
        expect = scalar_gemm(cfg, inst, desc, act.tolist(), wgt.tolist(), dict(enumerate(slots, slot_base)))
        wpr = cfg.out_words_per_row(bits)
        words = after[out_at * cfg.bus_bytes:].reshape(-1, cfg.bus_bytes)
        for word, values in expect.items():
            got = unpack_out_rows(words[word:word + wpr].reshape(1, -1), cfg.cols, bits, signed=True)[0]
            low = [((v + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1)) for v in values]
            assert got.tolist() == low, (word, desc)


# ---- tokens, ranges, hazards --------------------------------------------------------------------

def small_case(seed=0):
    return random_case(np.random.default_rng(seed), SMALL, Mode.MAC)


def test_deadlock_is_reported_in_one_line():
    inst, desc, act, wgt, slots, slot_base, _ = small_case()
    streams, memory, _ = one_gemm_program(SMALL, inst, desc, act, wgt, slots, slot_base)
    no_signal = Streams(streams.load[:2] + (transfer(Opcode.LOAD, Buffer.WGT, 0, 0, 1).encode(),) + streams.load[3:],
                        streams.compute, streams.store)
    with pytest.raises(FsimError, match=r"^deadlock: load has ended; compute instruction 0 \(GEMM\) waits for a "
                                        r"'loaded' token.*store instruction 0 \(STORE\) waits for a 'computed'"):
        run(SMALL, no_signal, memory)


def test_out_of_range_accesses_are_errors():
    inst, desc, act, wgt, slots, slot_base, _ = small_case()
    streams, memory, _ = one_gemm_program(SMALL, inst, desc, act, wgt, slots, slot_base)
    with pytest.raises(FsimError, match="external memory word"):
        run(SMALL, streams, memory[:-SMALL.bus_bytes])
    far = dataclasses.replace(inst, act_base=SMALL.act_words * SMALL.codes_per_act_word - 2)
    streams, memory, _ = one_gemm_program(SMALL, far, desc, act, wgt, slots, slot_base)
    with pytest.raises(FsimError, match="ACT code .* is outside the buffer"):
        run(SMALL, streams, memory)


def test_a_load_into_a_half_the_gemm_still_reads_is_a_race():
    inst, desc, act, wgt, slots, slot_base, _ = small_case()
    streams, memory, _ = one_gemm_program(SMALL, inst, desc, act, wgt, slots, slot_base)
    # A second ACT load after the signal, with no freed token: it may overwrite codes the GEMM reads.
    late = transfer(Opcode.LOAD, Buffer.ACT, 0, 0, SMALL.act_words)
    racy = Streams(streams.load[:-1] + (late.encode(), streams.load[-1]), streams.compute, streams.store)
    with pytest.raises(FsimError, match="race on ACT buffer word .* no token between them"):
        run(SMALL, racy, memory)
    # Waiting for the GEMM's freed token orders it, and then nothing is wrong.
    ordered = dataclasses.replace(late, wait_next=1)
    gemm_frees = dataclasses.replace(decode(streams.compute[0]), signal_prev=1)
    fine = Streams(streams.load[:-1] + (ordered.encode(), streams.load[-1]),
                   (gemm_frees.encode(),) + streams.compute[1:], streams.store)
    run(SMALL, fine, memory)
    assert run(SMALL, racy, memory, check_hazards=False).size == memory.size


def decode(word):
    from hw.core.isa import decode_instruction

    return decode_instruction(word)


def test_unwritten_buffer_words_and_wrong_unit_flags_are_errors():
    inst, desc, act, wgt, slots, slot_base, _ = small_case()
    streams, memory, _ = one_gemm_program(SMALL, inst, desc, act, wgt, slots, slot_base)
    no_wgt = Streams(streams.load[:2] + (Instruction(Opcode.SYNC, signal_next=1).encode(),) + streams.load[3:],
                     streams.compute, streams.store)
    with pytest.raises(FsimError, match="reads WGT buffer word .* which nothing has written"):
        run(SMALL, no_wgt, memory)
    bad = Streams((Instruction(Opcode.SYNC, wait_prev=1).encode(),) + streams.load, streams.compute, streams.store)
    with pytest.raises(FsimError, match="sets wait_prev, which the load unit does not have"):
        run(SMALL, bad, memory)


def test_accumulator_overflow_is_an_error():
    inst, desc, act, wgt, slots, slot_base, _ = small_case()
    tight = dataclasses.replace(SMALL, pe_acc_bits=8)
    streams, memory, _ = one_gemm_program(tight, inst, desc, act, wgt, slots, slot_base)
    with pytest.raises(FsimError, match="PE accumulator X reaches .* beyond 8 signed bits"):
        run(tight, streams, memory)
    huge = tuple(dataclasses.replace(s, m_x=2**32 - 1) for s in desc.segments)
    slots = [dataclasses.replace(s, bias=2**47 - 1) for s in slots]
    desc = dataclasses.replace(desc, segments=huge)
    streams, memory, _ = one_gemm_program(SMALL, inst, desc, act, wgt, slots, slot_base)
    with pytest.raises(FsimError, match="lane accumulator reaches .* beyond 48 signed bits"):
        run(SMALL, streams, memory)


def test_double_buffered_jobs_with_tokens_run_in_any_order():
    """Three jobs through two halves, VTA style; the GEMMs write rows whose values are checked."""
    cfg = SMALL
    half_act, half_out = cfg.act_words // 2, cfg.out_words // 2
    loops = DescLoops(mode=Mode.MAC, raw=1, out_width=3, tau_log2=0, max_shift=0, zero_code=0, log_levels=0,
                      n_seg=1, uses_y=0, q_min=0, q_max=0, n_ob=1, n_c=1, n_i=1, n_d=1)
    desc = Descriptor(loops, DescActStrides(0, 0, 0, 0, 0, 0),
                      DescOtherStrides(0, 0, 0, 0, 0, cfg.out_words_per_row(32), 0, 0),
                      (Segment(j_start=0, j_len=1, zero_point=0, residue_pass=0, m_x=1, m_y=0),))
    bb = cfg.bus_bytes
    param = np.concatenate([pack_descriptor(desc, cfg.bus_bits),
                            pack_entries([ColumnSlot(0, 0, 2**30, 17, 0)] * cfg.cols, cfg.bus_bits)])
    wgt = pack_codes(np.ones(cfg.cols, np.int64), 8, cfg.bus_bits)          # w = 1: outputs = codes
    jobs = [np.full(cfg.rows, 10 * (i + 1)) for i in range(3)]
    images = [param, wgt] + [pack_codes(j, 8, cfg.bus_bits) for j in jobs]
    starts = np.cumsum([0] + [im.size // bb for im in images])
    out_at = int(starts[-1])
    memory = np.concatenate(images + [np.zeros(3 * 2 * bb, np.uint8)])
    load = [transfer(Opcode.LOAD, Buffer.PARAM, 0, 0, param.size // bb),
            transfer(Opcode.LOAD, Buffer.WGT, 0, int(starts[1]), 1)]
    compute, store = [], []
    for i in range(3):
        load.append(transfer(Opcode.LOAD, Buffer.ACT, (i % 2) * half_act, int(starts[2 + i]), 1,
                             wait_next=int(i >= 2), signal_next=1))
        compute.append(gemm(act_base=(i % 2) * half_act * cfg.codes_per_act_word, out_base=(i % 2) * half_out,
                            col_base=2 * (param.size // bb - 2), wait_prev=1, wait_next=int(i >= 2), signal_prev=1,
                            signal_next=1))
        store.append(Transfer(opcode=Opcode.STORE, wait_prev=1, wait_next=0, signal_prev=1, signal_next=0,
                              buffer=Buffer.OUT, buf_addr=(i % 2) * half_out, ext_addr=out_at + 2 * i, rows=1,
                              row_words=2, ext_stride=0, buf_stride=0))
    streams = Streams.assemble(load, compute, store)
    after = run(cfg, streams, memory)
    rows = after[out_at * bb:].reshape(3, 2 * bb)
    got = unpack_out_rows(rows, cfg.cols, 32, signed=True)
    assert got.tolist() == [[10 * (i + 1)] * cfg.cols for i in range(3)]
    # Dropping the third job's wait for a freed slot lets its LOAD overwrite job 0's codes too early.
    load[4] = dataclasses.replace(load[4], wait_next=0)
    with pytest.raises(FsimError, match="race on ACT buffer"):
        run(cfg, Streams.assemble(load, compute, store), memory)


def test_the_choices_docs_core_leaves_open():
    """The interpretations listed in hw/fsim/__init__.py, each pinned down."""
    inst, desc, act, wgt, slots, slot_base, bits = small_case(3)
    # segments are bus_bits / 128 per word on a wider bus too
    wide = pack_descriptor(desc, 512)
    assert wide.size == (3 + -(-len(desc.segments) // 4)) * 64
    assert decode_descriptor(wide, 0, 512) == desc
    # every row of a tile on one OUT word: the last row (r = R - 1 of the last tile) wins
    stacked = dataclasses.replace(desc, other=dataclasses.replace(desc.other, out_b=0, out_ob=0, out_rb=0, out_row=0))
    one = dataclasses.replace(inst, n_batch=1, n_rb=1)
    streams, memory, out_at = one_gemm_program(SMALL, one, stacked, act, wgt, slots, slot_base)
    expect = scalar_gemm(SMALL, one, stacked, act.tolist(), wgt.tolist(), dict(enumerate(slots, slot_base)))
    streams = Streams(streams.load, streams.compute,
                      (dataclasses.replace(decode(streams.store[0]), row_words=SMALL.out_words_per_row(bits)).encode(),)
                      + streams.store[1:])
    after = run(SMALL, streams, memory)
    word = after[out_at * SMALL.bus_bytes:].reshape(-1, SMALL.bus_bytes)[:SMALL.out_words_per_row(bits)]
    assert unpack_out_rows(word.reshape(1, -1), SMALL.cols, bits, signed=True)[0].tolist() == expect[0]
    # STORE ignores its buffer field; LOAD into OUT is refused
    streams, memory, _ = one_gemm_program(SMALL, inst, desc, act, wgt, slots, slot_base)
    as_act = dataclasses.replace(decode(streams.store[0]), buffer=Buffer.ACT)
    same = run(SMALL, Streams(streams.load, streams.compute, (as_act.encode(),) + streams.store[1:]), memory)
    assert np.array_equal(same, run(SMALL, streams, memory))
    into_out = dataclasses.replace(decode(streams.load[1]), buffer=Buffer.OUT)
    with pytest.raises(FsimError, match="LOAD into the OUT buffer"):
        run(SMALL, Streams(streams.load[:1] + (into_out.encode(),) + streams.load[2:], streams.compute, streams.store),
            memory)
    # an empty GEMM writes nothing (so the STORE after it reads unwritten words)
    empty = dataclasses.replace(inst, n_batch=0)
    streams, memory, _ = one_gemm_program(SMALL, empty, desc, act, wgt, slots, slot_base)
    with pytest.raises(FsimError, match="reads OUT buffer word 0, which nothing has written"):
        run(SMALL, streams, memory)

    def refused(new_desc, config=SMALL):
        streams, memory, _ = one_gemm_program(config, inst, new_desc, act, wgt, slots, slot_base)
        with pytest.raises(FsimError) as info:
            run(config, streams, memory)
        return str(info.value)

    two = tuple(desc.segments) * 2 if len(desc.segments) == 1 else desc.segments[:2]
    raw_two = dataclasses.replace(desc, loops=dataclasses.replace(desc.loops, raw=1, n_seg=len(two)), segments=two)
    assert "raw output with 2 segments" in refused(raw_two)
    no_cag = dataclasses.replace(SMALL, formats=("uniform",))
    many = dataclasses.replace(desc, loops=dataclasses.replace(desc.loops, raw=0, n_seg=len(two)), segments=two)
    assert "2 MAC segments (channel groups), which this core does not include" in refused(many, no_cag)
    hluq = dataclasses.replace(desc, loops=dataclasses.replace(desc.loops, mode=Mode.HLUQ, log_levels=17))
    assert "log_levels 17 (shifts up to max_shift 15)" in refused(hluq)
    past = dataclasses.replace(desc, segments=(dataclasses.replace(desc.segments[0], j_len=999),) + desc.segments[1:])
    assert "segment 0 covers j 0..998" in refused(past)


@pytest.mark.parametrize("bus_bits", [128, 256, 512])
def test_vectorized_slot_decode_equals_the_record_decoder(bus_bits):
    """decode_slots reads fields with 64-bit array shifts; every field, including the signed ones and the
    one that straddles bit 64, must equal ColumnSlot.decode of the same 128 bits."""
    from hw.fsim import decode_slot, decode_slots
    rng = np.random.default_rng(bus_bits)
    slots = [ColumnSlot(**{f.name: int(rng.integers(-(1 << (f.width - 1)), 1 << (f.width - 1)) if f.signed
                                       else rng.integers(0, 1 << f.width)) for f in ColumnSlot.LAYOUT})
             for _ in range(300)]
    param = pack_entries(slots, bus_bits)
    index = rng.integers(0, len(slots), (5, 7, 3))
    fields = decode_slots(param, index, bus_bits)
    for f in ColumnSlot.LAYOUT:
        expected = [getattr(decode_slot(param, int(s), bus_bits), f.name) for s in index.reshape(-1)]
        assert fields[f.name].reshape(-1).tolist() == expected, f.name
