"""Real LiteMedSAM layers through the simulated board (``sim.board_runner``): the host driver sends each
layer's memory image and programs over the UART, starts the core, waits, and reads the outputs back,
exactly as against the real board. Every output element is compared with sw/ref, every stored word with
the functional model (``hw.fsim``), the instruction counts with the streams; the cycle counts are
reported next to the cycle model's (the board's block RAM answers faster than the simulation memory
the cycle model assumes, so they differ).

The layers are slices: real weights and constants of a bundle, real input codes (the first rows,
heads, queries and keys, or the top-left corner of a conv input), small enough that the UART time in
simulation stays in seconds. ``SLICES`` names one layer of each kind for an AHCPTQ W4A4 LiteMedSAM bundle.

    cases = slice_cases(bundle, inputs)                   # inputs: captured codes by "<layer>.<part>"
    preps, words = memory_words_needed(config, cases)    # compiled, with fsim / sw/ref / cycle model
    results, totals = board_cosim(BoardSimulator(config, words), config, preps)
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.compiler.model import invocation_kind
from hw.core.config import CoreConfig

from .random_cosim import LayerResult, Prepared, check, core_runs, prepare
from .random_layers import RandomCase

# (layer, op, how its inputs are cut from the captured codes)
SLICES = (
    ("image_encoder.layers.1.blocks.0.attn.proj", None, {"input": (slice(0, 4),)}),                 # linear
    ("image_encoder.layers.1.downsample.conv2", None, {"input": (slice(None), slice(None), slice(0, 4), slice(0, 4))}),
    ("image_encoder.layers.1.blocks.0.attn", "scores", {"q": (slice(0, 1), slice(0, 6)), "k": (slice(0, 1), slice(0, 8))}),
    ("image_encoder.layers.1.blocks.0.attn", "values", {"probs": (slice(0, 1), slice(0, 6), slice(0, 8)),
                                                        "v": (slice(0, 1), slice(0, 8))}),
)
ATTENTION_PARTS = {"scores": ("q", "k"), "values": ("probs", "v")}


@dataclass
class BoardLayerResult:
    layer: LayerResult
    model_cycles: list[int]
    board_cycles: list[int]
    sim_s: float             # simulated seconds of the whole invocation over the link
    frames: int
    bytes_sent: int
    bytes_received: int
    words_sent: int

    @property
    def ok(self) -> bool:
        r = self.layer
        return not (r.mismatches or r.word_mismatches or r.count_mismatches)

    def line(self) -> str:
        r = self.layer
        return (f"{r.invocation_kind}: {r.note}: {r.elements} outputs, {r.mismatches} mismatches vs sw/ref; {r.words} "
                f"words vs fsim, {r.word_mismatches} differ; {r.count_mismatches} runs with other instruction counts; "
                f"board {r.cycles} cycles (cycle model {r.model_cycles}); link {self.frames} frames, "
                f"{self.bytes_sent} B sent, {self.bytes_received} B received, {self.sim_s * 1e3:.2f} ms simulated")


def input_key(layer: str, op: str | None, part: str) -> str:
    return f"{layer}.{part}" if op else f"{layer}.input"


def slice_cases(bundle, inputs: dict[str, np.ndarray], slices=SLICES) -> list[RandomCase]:
    """The ``slices`` of ``bundle``'s layers, their input codes cut from ``inputs``."""
    cases = []
    for layer_name, op, cuts in slices:
        layer = bundle.layers[layer_name]
        codes = {part: np.ascontiguousarray(np.asarray(inputs[input_key(layer_name, op, part)], np.int64)[cut])
                 for part, cut in cuts.items()}
        note = f"{layer_name}{':' + op if op else ''} " + " ".join(f"{k}={'x'.join(map(str, v.shape))}"
                                                                   for k, v in codes.items())
        cases.append(RandomCase(invocation_kind(layer, op), layer, op, codes, note))
    return cases


def memory_words_needed(config: CoreConfig, cases) -> tuple[list[Prepared], int]:
    """Each case compiled (fsim, sw/ref, cycle model) and the external memory it needs, as a power of two."""
    preps = [prepare(config, case, 1 << 28) for case in cases]
    need = max(p.memory.size // config.bus_bytes for p in preps)
    return preps, 1 << max(need - 1, 1).bit_length()


def board_cosim(sim, config: CoreConfig, preps: list[Prepared], name: str = "layers") -> tuple[list[BoardLayerResult], dict]:
    """Every prepared case through the simulated board in one simulator process; the results and the
    run's totals (wall seconds, simulated seconds, the link's retries and error answers)."""
    job_dir = Path(sim.build_dir) / name
    job_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for c, prep in enumerate(preps):
        runs = []
        for i, run in enumerate(core_runs(prep)):
            memory = None
            if run.memory is not None:
                memory = str(job_dir / f"memory_{c}_{i}.npy")
                np.save(memory, run.memory)
            runs.append({"streams": {u: [f"{w:x}" for w in getattr(run.streams, u)] for u in ("load", "compute", "store")},
                         "memory": memory, "read": [list(r) for r in run.read], "timeout_cycles": run.timeout_cycles})
        jobs.append({"runs": runs, "result": str(job_dir / f"result_{c}_{{i}}.npy")})
    start = time.perf_counter()
    got = sim.run("sim.board_scenarios:run_layers", {"config": config.to_dict(), "jobs": jobs}, name=name)
    wall = time.perf_counter() - start
    out = []
    for c, (prep, job) in enumerate(zip(preps, got["jobs"])):
        from .core_runner import CoreResult

        results = [CoreResult(np.load(job_dir / f"result_{c}_{i}.npy"), cycles, counts)
                   for i, (cycles, counts) in enumerate(zip(job["cycles"], job["counts"]))]
        layer = check(config, prep, results)
        out.append(BoardLayerResult(layer, prep.model_cycles, job["cycles"], job["sim_s"], job["frames"],
                                    job["bytes_sent"], job["bytes_received"], job["words_sent"]))
    return out, {"wall_s": wall, **{k: v for k, v in got.items() if k != "jobs"}}


def small_core(rows: int = 2, cols: int = 2, base: str = "w4-16x16") -> CoreConfig:
    """The preset ``base`` with an R x K array (its buffers as they are)."""
    from hw.core.config import PRESETS

    return dataclasses.replace(PRESETS[base], rows=rows, cols=cols)
