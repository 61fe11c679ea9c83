# amaranth: UnusedElaboratable=no
# (the bad-parameter test builds units that raise before they can be used)
"""FP32 units (hw.fp32) in Amaranth's simulator, every output bit against numpy float32.

numpy is the reference: ``a * b``, ``x + y`` and ``acc + a * b`` on float32 arrays (round to nearest
even, subnormals kept). Every result numpy gives as a non-NaN must match bit for bit; wherever
numpy gives a NaN the hardware must give exactly the canonical NaN 0x7FC00000 (hw/fp32/__init__.py
says why NaN payloads are not copied).
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator

from hw.fp32 import INTERLEAVE, LANE_LATENCY, Fp32Adder, Fp32MacLane, Fp32MulAdd, Fp32Multiplier, mac_lane_cycles
from hw.fp32.format import CANONICAL_NAN
from hw.fp32.round import RoundPack
from hw.fp32.significand import DSP_COUNT, SignificandMultiplier

MULT18X18D_BITS = 18
SPECIALS = {
    "+0": 0x00000000, "-0": 0x80000000,
    "+min_sub": 0x00000001, "-min_sub": 0x80000001, "+max_sub": 0x007FFFFF, "-max_sub": 0x807FFFFF,
    "+min_normal": 0x00800000, "-min_normal": 0x80800000, "+1": 0x3F800000, "-1": 0xBF800000,
    "+max_normal": 0x7F7FFFFF, "-max_normal": 0xFF7FFFFF, "+inf": 0x7F800000, "-inf": 0xFF800000,
    "nan": 0x7FC00000, "-nan": 0xFFC00000, "snan": 0x7F800001, "nan_payload": 0x7FC12345,
}


# ---- drivers and the reference ----------------------------------------------------------------------

def words(values) -> np.ndarray:
    """float32 bit patterns (uint32) of Python ints or float values."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        return values.astype(np.float32).view(np.uint32)
    return values.astype(np.uint64).astype(np.uint32)


def f32(bits: np.ndarray) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def stream(dut, inputs: dict[str, np.ndarray], output: str) -> np.ndarray:
    """Drive one operand tuple per cycle into a fully pipelined unit; its results in order, each read
    ``dut.latency`` cycles after its operands."""
    count = len(next(iter(inputs.values())))
    columns = {name: [int(v) for v in values] for name, values in inputs.items()}
    got = []

    async def bench(ctx):
        ports = {name: getattr(dut, name) for name in columns}
        out = getattr(dut, output)
        for cycle in range(count + dut.latency):
            if cycle < count:
                for name, port in ports.items():
                    ctx.set(port, columns[name][cycle])
            await ctx.tick()
            if cycle + 1 >= dut.latency:
                got.append(ctx.get(out))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got[:count], dtype=np.uint64)


def expected(reference: np.ndarray) -> np.ndarray:
    """numpy's float32 results as the hardware must give them: NaNs as the canonical NaN."""
    reference = np.asarray(reference, dtype=np.float32)
    return np.where(np.isnan(reference), np.uint32(CANONICAL_NAN), reference.view(np.uint32)).astype(np.uint32)


def assert_bits(got: np.ndarray, want: np.ndarray, operands: dict[str, np.ndarray]):
    bad = np.flatnonzero(got != want)
    if len(bad):
        rows = [", ".join(f"{k}={int(v[i]):#010x}" for k, v in operands.items())
                + f": got {int(got[i]):#010x}, numpy {int(want[i]):#010x}" for i in bad[:8]]
        pytest.fail(f"{len(bad)} of {len(got)} results differ:\n" + "\n".join(rows))


def numpy_mul(a, b):
    with np.errstate(all="ignore"):
        return f32(a) * f32(b)


def numpy_add(x, y):
    with np.errstate(all="ignore"):
        return f32(x) + f32(y)


def numpy_mul_add(a, b, acc):
    with np.errstate(all="ignore"):
        return f32(acc) + f32(a) * f32(b)  # product rounded to float32, then the sum


def check_multiplier(a, b):
    a, b = words(a), words(b)
    assert_bits(stream(Fp32Multiplier(), {"a": a, "b": b}, "p"), expected(numpy_mul(a, b)), {"a": a, "b": b})


def check_adder(x, y):
    x, y = words(x), words(y)
    assert_bits(stream(Fp32Adder(), {"x": x, "y": y}, "s"), expected(numpy_add(x, y)), {"x": x, "y": y})


def check_mul_add(a, b, acc):
    a, b, acc = words(a), words(b), words(acc)
    got = stream(Fp32MulAdd(), {"a": a, "b": b, "acc": acc}, "sum")
    assert_bits(got, expected(numpy_mul_add(a, b, acc)), {"a": a, "b": b, "acc": acc})


# ---- operand generators -----------------------------------------------------------------------------

def random_words(rng, count: int) -> np.ndarray:
    """Uniform random bit patterns: every exponent field, NaNs and infinities included."""
    return rng.integers(0, 1 << 32, count, dtype=np.uint64).astype(np.uint32)


def compose(sign, exp_field, frac) -> np.ndarray:
    sign, exp_field, frac = (np.asarray(v, dtype=np.uint64) for v in (sign, exp_field, frac))
    return ((sign << 31) | (exp_field << 23) | frac).astype(np.uint32)


def with_exponents(rng, exp_fields) -> np.ndarray:
    """Random signs and fractions under the given exponent fields (0 = subnormal)."""
    count = len(exp_fields)
    return compose(rng.integers(0, 2, count), exp_fields, rng.integers(0, 1 << 23, count))


def exact(bits) -> Fraction:
    value = float(f32(np.array([bits]))[0])
    return Fraction(value)


def is_tie(value: Fraction) -> bool:
    """Whether ``value`` lies exactly halfway between two adjacent float32 (finite range only)."""
    nearest = np.float32(float(value))  # value fits float64 exactly in every use here
    if not np.isfinite(nearest):
        return False
    towards = np.float32(np.inf if value > Fraction(float(nearest)) else -np.inf)
    neighbour = np.nextafter(nearest, towards)
    return np.isfinite(neighbour) and value - Fraction(float(nearest)) == Fraction(float(neighbour)) - value \
        and value != Fraction(float(nearest))


def sparse_significand(rng, count: int) -> np.ndarray:
    """Fractions with one or two set bits among the top eight, so that a product's bits below the kept
    24 are few and land on a tie often."""
    frac = np.zeros(count, dtype=np.uint64)
    for i in range(count):
        for bit in 15 + rng.choice(8, size=rng.integers(1, 3), replace=False):
            frac[i] |= np.uint64(1) << np.uint64(bit)
    return frac


# ---- multiplier --------------------------------------------------------------------------------------

def test_multiplier_random_bit_patterns():
    rng = np.random.default_rng(1)
    check_multiplier(random_words(rng, 20000), random_words(rng, 20000))


def test_multiplier_products_across_the_whole_range():
    """Exponent pairs whose products span below the subnormals, the subnormals, the normals and past the
    largest float; subnormal operands with normal partners."""
    rng = np.random.default_rng(2)
    count = 20000
    ea = rng.integers(0, 255, count)
    # biased product exponent ea + eb - 127 drawn over -40 .. 300, a third of them over the subnormals
    target = np.where(rng.random(count) < 0.3, rng.integers(-30, 2, count), rng.integers(-40, 300, count))
    eb = np.clip(target + 127 - ea, 0, 254)
    a, b = with_exponents(rng, ea), with_exponents(rng, eb)
    product = numpy_mul(a, b)
    magnitude = np.abs(product[np.isfinite(product)])
    assert np.sum((magnitude > 0) & (magnitude < np.float32(2.0 ** -126))) > 1000  # subnormal results
    assert np.sum(np.isinf(product)) > 500 and np.sum(magnitude == 0) > 500
    check_multiplier(a, b)


def test_multiplier_ties_round_to_even():
    rng = np.random.default_rng(3)
    count = 12000
    signs = rng.integers(0, 2, (2, count))
    # half: a random significand near 1 times a sparse one at any exponent (normal products); half:
    # two sparse significands whose product falls below the normal range (ties at the subnormal spacing)
    low = rng.random(count) < 0.5
    ea = np.where(low, rng.integers(100, 127, count), 127)
    eb = np.where(low, rng.integers(-24, 1, count) + 127 - ea, rng.integers(1, 254, count))  # ea + eb - 127
    a = compose(signs[0], ea, np.where(low, sparse_significand(rng, count), rng.integers(0, 1 << 23, count)))
    b = compose(signs[1], np.clip(eb, 1, 254), sparse_significand(rng, count))
    ties = [i for i in range(count) if is_tie(exact(a[i]) * exact(b[i]))]
    assert len(ties) > 500
    subnormal_ties = [i for i in ties if abs(exact(a[i]) * exact(b[i])) < Fraction(2) ** -126]
    assert len(subnormal_ties) > 50
    check_multiplier(a[ties], b[ties])


def test_multiplier_overflow_and_underflow_edges():
    cases = [
        (0x7F7FFFFF, 0x40000000),  # max * 2 -> inf
        (0x7F7FFFFF, 0x3F800001),  # max * (1 + ulp) rounds past max -> inf
        (0xFF7FFFFF, 0x3F800001),  # -> -inf
        (0x7F7FFFFF, 0x3F800000),  # max * 1
        (0x7F7FFFFF, 0x3F7FFFFF),  # max * (1 - ulp/2), stays finite
        (0x5F800000, 0x5F800000),  # 2^64 * 2^64 = 2^128 -> inf
        (0x5F7FFFFF, 0x5F800000),  # just below 2^128 -> max
        (0x00800000, 0x3F000000),  # min normal / 2 -> subnormal, exact
        (0x00800000, 0x3F7FFFFF),  # min normal * (1 - 2^-24): tie between max subnormal and min normal -> min normal
        (0x00800001, 0x3F7FFFFF),  # rounds up across the subnormal / normal border
        (0x00000001, 0x3F000000),  # min subnormal / 2: tie -> +0
        (0x00000001, 0xBF000000),  # -> -0
        (0x00000001, 0x3F400000),  # min subnormal * 0.75 -> min subnormal
        (0x00000003, 0x3F000000),  # 1.5 ulps: tie -> 2 ulps
        (0x00000001, 0x3E800000),  # a quarter ulp -> 0
        (0x007FFFFF, 0x3F800000),  # max subnormal * 1
        (0x007FFFFF, 0x40000000),  # max subnormal * 2: a normal from a subnormal operand
        (0x007FFFFF, 0x007FFFFF),  # subnormal * subnormal -> 0
        (0x1A000000, 0x1A000000),  # 2^-75 * 2^-75 = 2^-150: tie -> 0
        (0x1A000001, 0x1A000000),  # just above half the min subnormal -> min subnormal
        (0x00000001, 0x4B000000),  # min subnormal * 2^23 = min normal
        (0x00000001, 0x7F7FFFFF),  # min subnormal * max
    ]
    a, b = zip(*cases)
    check_multiplier(a + b, b + a)


# ---- adder -------------------------------------------------------------------------------------------

def test_adder_random_bit_patterns():
    rng = np.random.default_rng(4)
    check_adder(random_words(rng, 20000), random_words(rng, 20000))


def test_adder_close_exponents_and_cancellation():
    """Exponent differences of 0 to 30 (alignment, guard and sticky bits), opposite signs that cancel
    almost everything, and subnormal sums."""
    rng = np.random.default_rng(5)
    count = 20000
    ex = rng.integers(0, 255, count)
    ey = np.clip(ex + rng.integers(-30, 31, count), 0, 254)
    x, y = with_exponents(rng, ex), with_exponents(rng, ey)
    # a quarter of the pairs: y = -x, most with a few low fraction bits changed
    near = rng.random(count) < 0.25
    change = rng.integers(0, 1 << 8, count) * (rng.random(count) < 0.8)
    y = np.where(near, (x ^ np.uint32(0x80000000)) ^ change.astype(np.uint32), y)
    total = numpy_add(x, y)
    assert np.sum((total != 0) & (np.abs(total) < np.float32(2.0 ** -126))) > 100
    assert np.sum(total == 0) > 500
    check_adder(x, y)


def test_adder_ties_round_to_even():
    rng = np.random.default_rng(6)
    count = 4000
    ex = rng.integers(1, 254, count)
    x = with_exponents(rng, ex)
    x = np.where(rng.random(count) < 0.2, x & np.uint32(0xFF800000), x)  # powers of two: ties from below
    # y = odd multiple of half (or a quarter) of x's ulp: sums exactly halfway between two floats
    shift = rng.integers(24, 26, count)
    odd = 2 * rng.integers(0, 4, count) + 1
    y_value = [(-1) ** int(s) * int(o) * Fraction(2) ** int(e - 127 - sh)
               for s, o, e, sh in zip(rng.integers(0, 2, count), odd, ex, shift)]
    y = words(np.array([float(v) for v in y_value], dtype=np.float64))
    keep = [i for i in range(count) if float(y_value[i]) == float(f32(y[i:i + 1])[0]) and
            is_tie(exact(x[i]) + exact(y[i]))]
    assert len(keep) > 1000
    check_adder(x[keep], y[keep])


def test_adder_overflow_and_underflow_edges():
    cases = [
        (0x7F7FFFFF, 0x7F7FFFFF),  # max + max -> inf
        (0xFF7FFFFF, 0xFF7FFFFF),  # -> -inf
        (0x7F7FFFFF, 0x73000000),  # max + half its ulp (2^103): tie, max is odd -> inf
        (0x7F7FFFFF, 0x72800000),  # max + a quarter ulp -> max
        (0x7F7FFFFE, 0x73000000),  # tie below an even neighbour -> 0x7F7FFFFE
        (0x00800000, 0x807FFFFF),  # min normal - max subnormal = min subnormal
        (0x00000001, 0x80000001),  # -> +0
        (0x80000001, 0x00000001),  # -> +0
        (0x80000000, 0x80000000),  # -0 + -0 = -0
        (0x00000000, 0x80000000),  # +0 + -0 = +0
        (0x3F800000, 0xBF800000),  # 1 - 1 = +0
        (0x007FFFFF, 0x00000001),  # max subnormal + min subnormal = min normal
        (0x007FFFFF, 0x007FFFFF),  # subnormal + subnormal -> normal
        (0x00800001, 0x80800000),  # normal - normal -> subnormal
        (0x3F800000, 0x33800000),  # 1 + 2^-24: tie -> 1
        (0x3F800001, 0x33800000),  # (1 + ulp) + 2^-24: tie -> 1 + 2 ulps
        (0x3F800000, 0xB3800000),  # 1 - 2^-24: exact
        (0x3F800000, 0xB3000000),  # 1 - 2^-25: tie below 1 -> 1
        (0x4B800000, 0xBF800000),  # 2^24 - 1: exact, one bit of cancellation
        (0x7F800000, 0x7F7FFFFF),  # inf + max -> inf
    ]
    x, y = zip(*cases)
    check_adder(x + y, y + x)


# ---- multiply-add lane -------------------------------------------------------------------------------

def test_mul_add_special_value_table():
    """All 18^3 triples of zeros, subnormals, min normals, ones, max normals, infinities and NaNs."""
    values = list(SPECIALS.values())
    a, b, acc = (np.array(v, dtype=np.uint32) for v in zip(*itertools.product(values, repeat=3)))
    check_mul_add(a, b, acc)


def test_multiplier_and_adder_special_value_tables():
    values = list(SPECIALS.values())
    x, y = (np.array(v, dtype=np.uint32) for v in zip(*itertools.product(values, repeat=2)))
    check_multiplier(x, y)
    check_adder(x, y)


def test_mul_add_random_triples():
    rng = np.random.default_rng(7)
    count = 8000
    a, b, acc = random_words(rng, count), random_words(rng, count), random_words(rng, count)
    # half the triples: normal-range products and accumulators near -a * b (cancellation)
    ea = rng.integers(64, 190, count)
    a2, b2 = with_exponents(rng, ea), with_exponents(rng, np.clip(254 - ea + rng.integers(-20, 20, count), 1, 254))
    acc2 = words(-numpy_mul(a2, b2)) ^ rng.integers(0, 1 << 10, count).astype(np.uint32)
    acc2 = np.where(rng.random(count) < 0.5, acc2, with_exponents(rng, np.clip(ea, 0, 254)))
    half = count // 2
    check_mul_add(np.concatenate([a[:half], a2[half:]]), np.concatenate([b[:half], b2[half:]]),
                  np.concatenate([acc[:half], acc2[half:]]))


def test_mul_add_ties_and_edges():
    """acc + a * b where the product is exact (b a power of two) and the sum is a tie, plus products that
    round before the addition changes the outcome (two roundings, not a fused multiply-add)."""
    rng = np.random.default_rng(8)
    count = 2000
    ex = rng.integers(40, 200, count)
    acc = with_exponents(rng, ex)
    scale = rng.integers(-20, 21, count)
    product = [(-1) ** int(s) * Fraction(2) ** int(e - 127 - 24) for s, e in zip(rng.integers(0, 2, count), ex)]
    b = words(np.array([2.0 ** int(k) for k in scale]))
    a = words(np.array([float(p / Fraction(2) ** int(k)) for p, k in zip(product, scale)]))
    ties = [i for i in range(count) if is_tie(exact(acc[i]) + exact(a[i]) * exact(b[i]))]
    assert len(ties) > 1000
    fused_differs = [  # (1 + 2^-23)^2 - (1 + 2^-22): 0 with two roundings, 2^-46 fused
        (0x3F800001, 0x3F800001, 0xBF800002),
        (0x3F800001, 0xBF800001, 0x3F800002),
        (0x7F7FFFFF, 0x40000000, 0xFF7FFFFF),  # product overflows to inf before the sum: inf
        (0x00000001, 0x3F000000, 0x00000001),  # product rounds to 0: acc unchanged
    ]
    fa, fb, fc = (np.array(v, dtype=np.uint32) for v in zip(*fused_differs))
    check_mul_add(np.concatenate([a[ties], fa]), np.concatenate([b[ties], fb]), np.concatenate([acc[ties], fc]))


# ---- accumulate lane ---------------------------------------------------------------------------------

def run_mac_lane(schedule: list[dict | None], tail: int = LANE_LATENCY + 2):
    """Drive Fp32MacLane with one term (dict of a, b, init, first, last) or None per cycle; returns
    [(cycle of done, sum)]."""
    dut = Fp32MacLane()
    seen = []

    async def bench(ctx):
        for cycle, term in enumerate(schedule + [None] * tail):
            term = term or {}
            ctx.set(dut.valid, int(bool(term)))
            for name in ("a", "b", "init", "first", "last"):
                ctx.set(getattr(dut, name), int(term.get(name, 0)))
            await ctx.tick()
            if ctx.get(dut.done):
                seen.append((cycle + 1, ctx.get(dut.sum)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


def numpy_chain(a, b, init) -> int:
    """The sequential float32 loop an FP32 GEMM accumulating in float32 performs."""
    total = f32(np.array([init]))[0]
    with np.errstate(all="ignore"):
        for x, y in zip(f32(a), f32(b)):
            total = np.float32(total + np.float32(x * y))
    return int(expected(np.array([total]))[0])


def interleaved_schedule(chains: list[dict], rng=None, gap: float = 0.0) -> tuple[list, list[int]]:
    """Terms of ``chains`` (each a dict of a, b arrays and init) issued round robin over the lane's
    INTERLEAVE slots, INTERLEAVE chains at a time; with ``gap`` > 0 a slot skips a round with that
    probability. Returns the schedule and, per chain, the cycle its last term is issued."""
    schedule, last_cycle = [], [0] * len(chains)
    for start in range(0, len(chains), INTERLEAVE):
        group = list(range(start, min(start + INTERLEAVE, len(chains))))
        position = {c: 0 for c in group}
        while any(position[c] < len(chains[c]["a"]) for c in group):
            for slot in range(INTERLEAVE):
                chain = group[slot] if slot < len(group) else None
                if chain is None or position[chain] >= len(chains[chain]["a"]) or \
                        (gap and rng.random() < gap):
                    schedule.append(None)
                    continue
                k = position[chain]
                terms = chains[chain]
                schedule.append({"a": terms["a"][k], "b": terms["b"][k], "init": terms["init"],
                                 "first": k == 0, "last": k == len(terms["a"]) - 1})
                last_cycle[chain] = len(schedule) - 1
                position[chain] += 1
    return schedule, last_cycle


def random_chain(rng, terms: int, spread: int = 8) -> dict:
    """Products of both signs over 2 * spread binades: sums that round at every step and cancel."""
    a = (rng.standard_normal(terms) * 2.0 ** rng.integers(-spread, spread, terms)).astype(np.float32)
    b = (rng.standard_normal(terms) * 2.0 ** rng.integers(-spread, spread, terms)).astype(np.float32)
    return {"a": words(a), "b": words(b), "init": int(words(np.array([rng.standard_normal()]))[0])}


def test_mac_lane_long_accumulation_matches_numpy_loop():
    rng = np.random.default_rng(9)
    chains = [random_chain(rng, 800) for _ in range(INTERLEAVE)]
    schedule, last_cycle = interleaved_schedule(chains)
    seen = run_mac_lane(schedule)
    assert [c for c, _ in seen] == sorted(c + LANE_LATENCY for c in last_cycle)
    want = [numpy_chain(c["a"], c["b"], c["init"]) for c in chains]
    order = np.argsort(last_cycle)
    assert [s for _, s in seen] == [want[i] for i in order]
    # every issue cycle was used, so the job took exactly the modelled cycle count
    assert seen[-1][0] + 1 == mac_lane_cycles(len(chains), 800)


def test_mac_lane_restarts_gaps_and_partial_groups():
    """Two groups back to back (the second group's first terms enter while the first group drains), a
    partial last group, slots that skip rounds, and chains through subnormals, overflow, inf and NaN."""
    rng = np.random.default_rng(10)
    chains = [random_chain(rng, int(rng.integers(1, 60)), spread=40) for _ in range(2 * INTERLEAVE + 3)]
    tiny = random_chain(rng, 50)
    tiny["a"] = words(f32(tiny["a"]) * np.float32(2.0 ** -70))  # products near the subnormal range
    tiny["b"] = words(f32(tiny["b"]) * np.float32(2.0 ** -70))
    tiny["init"] = 0x80000000
    huge = {"a": words(np.array([3e38, 3e38, -3e38, 1.0], dtype=np.float32)),
            "b": words(np.array([2.0, 1.0, 2.0, 1.0], dtype=np.float32)), "init": 0}  # inf, then inf - inf
    special = {"a": np.array([0x3F800000, 0x7FC00001, 0x3F800000], dtype=np.uint32),
               "b": np.array([0x3F800000, 0x3F800000, 0x3F800000], dtype=np.uint32), "init": 0}
    chains[1], chains[4], chains[8] = tiny, huge, special
    for gap in (0.0, 0.3):
        schedule, last_cycle = interleaved_schedule(chains, rng, gap)
        seen = run_mac_lane(schedule)
        order = np.argsort(last_cycle, kind="stable")
        want = [numpy_chain(c["a"], c["b"], c["init"]) for c in chains]
        assert [c for c, _ in seen] == [last_cycle[i] + LANE_LATENCY for i in order]
        assert [s for _, s in seen] == [want[i] for i in order]
    assert want[4] == CANONICAL_NAN and want[8] == CANONICAL_NAN


def test_mac_lane_cycle_model():
    assert mac_lane_cycles(1, 1) == 1 + LANE_LATENCY
    assert mac_lane_cycles(INTERLEAVE, 10) == 10 * INTERLEAVE + LANE_LATENCY
    assert mac_lane_cycles(INTERLEAVE + 1, 10) == 10 * INTERLEAVE + 9 * INTERLEAVE + 1 + LANE_LATENCY
    with pytest.raises(ValueError, match="outputs >= 1"):
        mac_lane_cycles(0, 4)


# ---- structure and the tests' own power to fail ------------------------------------------------------

def test_significand_product_uses_three_hard_multipliers():
    """Three ``$mul`` cells, each within one MULT18X18D's unsigned 18 x 18; the 6 x 6 piece is adders."""
    text = rtlil.convert(SignificandMultiplier(), name="top")
    muls = [cell.split("\n  end")[0] for cell in text.split("cell $mul ")[1:]]
    assert len(muls) == DSP_COUNT == 3
    for cell in muls:
        params = dict(line.split()[1:3] for line in cell.splitlines() if line.strip().startswith("parameter"))
        assert int(params["\\A_WIDTH"]) <= MULT18X18D_BITS and int(params["\\B_WIDTH"]) <= MULT18X18D_BITS
        assert params["\\A_SIGNED"] == "0" and params["\\B_SIGNED"] == "0"
    assert "cell $mul" not in rtlil.convert(Fp32Adder(), name="top")
    assert rtlil.convert(Fp32Multiplier(), name="top").count("cell $mul ") == DSP_COUNT


def test_significand_multiplier_exact():
    rng = np.random.default_rng(11)
    a = np.concatenate([rng.integers(0, 1 << 24, 3000), [0, (1 << 24) - 1, 1 << 23, (1 << 18) - 1]])
    b = np.concatenate([rng.integers(0, 1 << 24, 3000), [(1 << 24) - 1, (1 << 24) - 1, 1 << 23, (1 << 24) - 1]])
    dut = SignificandMultiplier()
    got = stream(SignificandMultiplier(), {"a": a, "b": b}, "p")
    assert [int(p) for p in got] == [int(x) * int(y) for x, y in zip(a, b)]


class TruncatingRoundPack(RoundPack):
    rounding = staticmethod(lambda lsb, guard, sticky: 0)


class TruncatingMultiplier(Fp32Multiplier):
    rounder_class = TruncatingRoundPack


def test_a_truncating_rounder_fails_these_checks():
    rng = np.random.default_rng(12)
    a, b = with_exponents(rng, rng.integers(100, 150, 500)), with_exponents(rng, rng.integers(100, 150, 500))
    got = stream(TruncatingMultiplier(), {"a": a, "b": b}, "p")
    with pytest.raises(pytest.fail.Exception, match="results differ"):
        assert_bits(got, expected(numpy_mul(a, b)), {"a": a, "b": b})
    with pytest.raises(pytest.fail.Exception, match="got 0x7fc00001"):  # a NaN with another payload
        assert_bits(np.array([0x7FC00001], dtype=np.uint32), expected(np.array([np.nan])), {})


def test_bad_parameters_are_one_line_errors():
    with pytest.raises(ValueError, match="at least one sticky bit"):
        RoundPack(sticky_bits=0)


def test_synthesis_wrappers_keep_every_lane_port():
    """bitstreams.fp32_lane's wrappers: every lane port registered once, every array lane instantiated."""
    from bitstreams.fp32_lane import LaneArray, RegisteredLane

    lane = RegisteredLane()
    assert lane.io_registers == 3 * 32 + 3 + 32 + 1
    assert set(lane.signature.members) == set(lane.lane.signature.members)
    assert rtlil.convert(lane, name="top").count("cell $mul ") == DSP_COUNT
    text = rtlil.convert(LaneArray(2, 1), name="top")
    assert text.count("cell $mul ") == 2 * DSP_COUNT
