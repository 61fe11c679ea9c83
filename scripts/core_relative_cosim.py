"""SAM ViT's attention with its relative positions on the core's RTL: QK^T and the softmax on chip
(invocation op ``probs``) on a core with ``softmax_relative_side``, in Verilator.

    python scripts/core_relative_cosim.py runs/bundle_ahcptq_w4a4 \
        --core bitstreams/cores/w4-16x16-lut-acc22-softmax4-rel64.json --heads 4 --report docs/relative_cosim.md
    python scripts/core_relative_cosim.py ... --attention windowed --windows 2 --heads 12

No SAM ViT checkpoint ships with the project, so the layer is the estimate's SAM ViT-B global attention
(``sw.estimate.sam_vit``: the bundle's attention codes and softmax format at ViT-B's shapes, a 64 x 64
grid of 4,096 tokens, 64 dimensions a head), or with ``--attention windowed`` its windowed attention (14 x 14
windows of 196 tokens, key rows padded to whole beats of the path), with random relative-position tables
(seeded, normal, scaled
so that every term fits the path's 16 bits) and random query and key codes. Every output code is compared
with sw/ref's integer softmax (``sw.ref.log_softmax``, the terms from the query codes), every OUT word
the program stores with the functional model, the RTL's cycle counter with the cycle model; the estimate's
own path (``sw.estimate.costs.call_cost``) times the same invocation too. Exit status 1 on any difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hw.compiler.invocation import InvocationSpec  # noqa: E402
from hw.compiler.softmax import probs_refusal, with_softmax  # noqa: E402
from hw.core.config import RELATIVE_TERM_BITS, load_core_config  # noqa: E402
from sim.core_cases import CoreCase, simulate_case  # noqa: E402
from sim.core_runner import CoreSimulator  # noqa: E402
from sw.atomic_file import write_atomic  # noqa: E402
from sw.bundle import load_bundle  # noqa: E402
from sw.estimate.costs import call_cost  # noqa: E402
from sw.estimate.sam_vit import vit_encoder_calls  # noqa: E402
from sw.ref.log_softmax import LogSoftmax  # noqa: E402


def relative_attention(bundle, config, attention: str, windows: int, heads: int, rng):
    """The estimate's ViT-B global (or windowed) attention call with ``windows`` windows (1 for the global one)
    of ``heads`` heads and random relative-position tables."""
    side = config.softmax_relative_side
    call = next(c for c in vit_encoder_calls(bundle) if c.spec.op == "scores" and c.layer.rel_pos_h is not None
                and (c.spec.shape("q")[-2] == side * side) == (attention == "global"))
    layer = call.layer
    tables = rng.normal(0.0, 0.1, (2,) + layer.rel_pos_h.shape)
    layer = dataclasses.replace(layer, rel_pos_h=tables[0].astype(np.float32), rel_pos_w=tables[1].astype(np.float32))
    bound = LogSoftmax.of(layer).relative.term_bound(layer.q.act_bits)
    limit = (1 << (RELATIVE_TERM_BITS - 1)) - 1
    if bound > limit:           # tables cut to 16-bit codes scale with their largest entry: scale them all
        layer = dataclasses.replace(layer, rel_pos_h=layer.rel_pos_h * (limit / bound / 1.01),
                                    rel_pos_w=layer.rel_pos_w * (limit / bound / 1.01))
    shapes = {name: (windows, heads) + tuple(call.spec.shape(name)[2:]) for name in ("q", "k")}
    spec = with_softmax(InvocationSpec.of(layer, "scores", shapes))
    return dataclasses.replace(call, spec=spec, layer=layer), shapes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle", help="the bundle whose attention codes the layer takes (its template)")
    parser.add_argument("--core", required=True, help="a core config with softmax_relative_side")
    parser.add_argument("--attention", choices=("global", "windowed"), default="global")
    parser.add_argument("--windows", type=int, default=1, help="windows of a windowed attention (ViT-B has 25)")
    parser.add_argument("--heads", type=int, default=4, help="heads of the invocation (ViT-B has 12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="sim_build")
    parser.add_argument("--report", help="write a markdown report here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    config = load_core_config(args.core)
    if not config.softmax_relative_side:
        parser.error(f"{args.core}: the core adds no relative-position terms (softmax_relative_side 0)")
    bundle = load_bundle(args.bundle)
    rng = np.random.default_rng(args.seed)
    if args.attention == "global" and args.windows != 1:
        parser.error("the global attention has one window (--windows 1)")
    call, shapes = relative_attention(bundle, config, args.attention, args.windows, args.heads, rng)
    layer = call.layer
    refusal = probs_refusal(config, layer, shapes["q"], shapes["k"])
    if refusal:
        parser.error(f"{args.core}: {refusal}")
    inputs = {"q": rng.integers(0, 1 << layer.q.act_bits, shapes["q"]),
              "k": rng.integers(0, 1 << layer.k.act_bits, shapes["k"])}
    estimate_cycles = call_cost(config, call).cycles
    # the simulated memory must hold the 4-bit codes out (12 heads: 100 MB) beside the program and inputs
    words = 1 << max(20, (4 * int(np.prod(shapes["q"][:-1])) * shapes["k"][-2] // config.bus_bits).bit_length() + 1)
    sim = CoreSimulator(config, words, args.work)
    result = simulate_case(sim, config, {layer.name: layer}, CoreCase(layer.name, "probs"), call.spec, inputs)
    print(result.line(config), file=sys.stderr)
    equal = result.mismatches == 0 and result.word_mismatches == 0 and result.cycles == result.model_cycles \
        == estimate_cycles
    if args.report:
        bound = LogSoftmax.of(layer).relative.term_bound(layer.q.act_bits)
        command = "python scripts/core_relative_cosim.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        lines = [
            f"# SAM ViT {args.attention} attention with relative positions on the core's RTL", "",
            f"Generated by `{command}` in {time.perf_counter() - start:.0f} s; do not edit by hand.", "",
            f"Core `{config.digest}` ({args.core}: {config.rows}x{config.cols} PEs, softmax path of "
            f"{config.softmax_lanes} keys a beat, relative-position grid {config.softmax_relative_side} x "
            f"{config.softmax_relative_side}); layer: the estimate's SAM ViT-B {args.attention} attention "
            f"(`sw.estimate.sam_vit`, shapes only: no SAM ViT checkpoint ships with the project) with {args.windows} "
            f"window(s) of {args.heads} heads of {shapes['q'][-2]} queries and keys, random relative-position tables "
            f"(seed {args.seed}; "
            f"any query's terms bounded by {bound}, the path takes up to {(1 << (RELATIVE_TERM_BITS - 1)) - 1}) "
            "and random query and key "
            "codes. Every output code is compared with sw/ref's integer softmax, every OUT word the program stores "
            "with the functional model, the RTL's cycle counter with the cycle model and the estimate's path.", "",
            "| layer | outputs compared | mismatches | OUT words vs fsim | differ | RTL cycles | model cycles | "
            "estimate path cycles | utilization | wall s |", "|---|---|---|---|---|---|---|---|---|---|",
            f"| `{layer.name}` probs | {result.elements} | {result.mismatches} | {result.words} | "
            f"{result.word_mismatches} | {result.cycles} | {result.model_cycles} | {estimate_cycles} | "
            f"{result.utilization(config):.3f} | {result.seconds:.0f} |", "",
            f"**{'All equal' if equal else 'DIFFERENCES'}**: {result.mismatches} code mismatches, "
            f"{result.word_mismatches} OUT words differing, RTL cycles {result.cycles}, model {result.model_cycles}, "
            f"estimate path {estimate_cycles}.", ""]
        write_atomic(args.report, "\n".join(lines))
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
