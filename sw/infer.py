"""``samhw infer``: one image and its boxes through the whole quantized model on the accelerator.

Every quantized layer runs on a backend of the core (``hw/runtime``: ``fsim``, the functional and cycle
model; ``verilator``, the core's RTL in a persistent simulator process), every host step in ``sw/ref``;
each layer's output codes are compared with ``sw/ref``'s on the same input codes. Outputs (``OUT``,
written complete or not at all):

    masks.npz      accelerator masks at the image size (bool [N, H, W]), low-res logits, predicted IoU,
                   the boxes, and the float model's masks
    overlay.png    float model vs accelerator masks
    layers.md      per-layer table: kind, MACs, cycles, utilization, host time, codes compared, mismatches
    summary.json   the same as data, with the image, boxes, core, program and totals

Torch stays in this layer (the model's preprocessing and postprocessing, the float masks); the runtime
is numpy only. Bad input (unreadable image, a box outside the image, a program that does not match the
bundle or core) is a ``SamhwError`` raised before anything is written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SamhwError

BACKENDS = ("fsim", "verilator", "board")
DEFAULT_CORE = "w8-16x16"
OUTPUT_FILES = ("masks.npz", "overlay.png", "layers.md", "summary.json")


def check_boxes(values, height: int, width: int) -> np.ndarray:
    """``--box`` numbers (groups of four, original pixels) as [N, 4]; default: the whole image."""
    if not values:
        return np.array([[0, 0, width, height]], np.float64)
    if len(values) % 4:
        raise SamhwError(f"--box takes groups of four numbers X0 Y0 X1 Y1, got {len(values)} numbers")
    boxes = np.asarray(values, np.float64).reshape(-1, 4)
    for x0, y0, x1, y1 in boxes:
        text = f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g})"
        if not np.isfinite([x0, y0, x1, y1]).all():
            raise SamhwError(f"{text} is not finite")
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise SamhwError(f"{text} is outside the {width}x{height} image or empty (need 0 <= X0 < X1 <= {width}, "
                             f"0 <= Y0 < Y1 <= {height})")
    return boxes


def check_out(out: Path) -> Path:
    """An output folder this command may replace: absent, empty, or written by it before."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SamhwError(f"{out}: exists and is not a folder")
    if out.is_dir():
        if out.resolve() == Path.cwd().resolve() or out.resolve() in Path.cwd().resolve().parents:
            raise SamhwError(f"{out}: is the working folder or above it; name a folder for the outputs")
        entries = {p.name for p in out.iterdir()}
        if entries and not (entries <= set(OUTPUT_FILES) and "summary.json" in entries):
            raise SamhwError(f"{out}: folder holds other files; name a new or empty folder (it is replaced whole)")
    return out


def layer_filter(only: list[str] | None):
    """``--only`` prefixes (``LAYER_PREFIX`` or ``LAYER_PREFIX:op``) -> the runtime's offload predicate
    (None: every layer on the backend)."""
    if not only:
        return None
    wanted = [(p.partition(":")[0], p.partition(":")[2] or None) for p in only]

    def offload(layer: str, op: str | None) -> bool:
        return any(layer.startswith(prefix) and (want is None or want == op) for prefix, want in wanted)

    return offload


def resolve_program(bundle, program_dir: str | None, core: str | None, offload=None):
    """The program: ``program_dir`` checked against ``bundle`` (and ``core``), or the bundle compiled here
    (only the invocations ``offload`` selects, when given)."""
    from hw.compiler.model import bundle_identity, model_calls
    from hw.compiler.program import build_program
    from hw.compiler.store import load_program
    from hw.core.config import CoreConfigError, load_core_config

    try:
        config = load_core_config(core) if core else None
    except CoreConfigError as exc:
        raise SamhwError(str(exc)) from None
    if program_dir:
        return load_program(program_dir, config, bundle)
    config = config or load_core_config(DEFAULT_CORE)
    calls = model_calls(bundle, config)
    if offload is not None:
        calls = [c for c in calls if offload(c[0].layer, c[0].op)]
        if not calls:
            raise SamhwError("--only selects no quantized layer of the bundle")
    return build_program(config, calls, bundle_identity(bundle))


def memory_words(program) -> int:
    """Simulation memory for a program: the next power of two that holds it (at least 2^16 words)."""
    return max(1 << 16, 1 << (program.total_words - 1).bit_length())


def make_backend(name: str, program, work: str | Path = "sim_build", port: str | None = None,
                 baud: int = 3_000_000):
    if name == "fsim":
        from hw.runtime import FsimBackend

        return FsimBackend()
    if name == "verilator":
        from sim.core_backend import VerilatorBackend

        return VerilatorBackend(program.config, memory_words(program), work)
    if name == "board":
        return open_board(program, port, baud)
    raise SamhwError(f"unknown backend '{name}' (one of {', '.join(BACKENDS)})")


def open_board(program, port: str | None, baud: int):
    """The board on ``port`` as a backend, checked against the program before any layer runs: the link
    answers, the core on the board is the program's, the program fits the board's memory."""
    from hw.board.backend import BoardBackend
    from hw.board.host import BoardLink, LinkError, SerialTransport

    if not port:
        raise SamhwError("--backend board needs --port (the board's serial port, e.g. /dev/ttyUSB0)")
    transport = None
    try:
        transport = SerialTransport(port, baud)
        backend = BoardBackend(BoardLink(transport, program.config.bus_bytes), program.config)
        backend.open(program)
    except (LinkError, OSError, ValueError) as exc:
        if transport is not None:
            transport.close()
        raise SamhwError(f"{port}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return backend


@dataclass
class Inference:
    """A model run on one image: the runtime's record plus the masks at the image size."""

    run: object                 # hw.runtime.ModelRun
    masks: np.ndarray           # accelerator, bool [N, H, W]
    float_masks: np.ndarray     # the float model, bool [N, H, W]
    boxes: np.ndarray           # [N, 4] original pixels
    seconds: float


def infer_image(model, bundle, program, backend, image: np.ndarray, boxes: np.ndarray, progress: bool = True,
                opened: bool = False, float_masks: np.ndarray | None = None, offload=None) -> Inference:
    """Preprocess, run the model on ``backend`` (progress bar over invocation runs), postprocess; the float
    model's masks for the overlay unless given."""
    import torch
    from tqdm import tqdm

    from hw.runtime import backend_runs, run_model
    from hw.runtime.threads import single_blas_thread

    start = time.perf_counter()
    with torch.no_grad():
        x, meta = model.preprocess(image)
        box_in = model.boxes_to_input(np.asarray(boxes, np.float32), meta)
    bar = tqdm(total=backend_runs(program, len(boxes), offload), desc=f"layers on {backend.name}", unit="inv",
               disable=not progress, leave=False)

    def tick(name: str) -> None:
        bar.set_postfix_str(name[-40:], refresh=False)
        bar.update(1)

    try:
        with single_blas_thread():
            run = run_model(bundle, program, backend, x.double().numpy(), box_in.double().numpy(), progress=tick,
                            opened=opened, offload=offload)
    finally:
        bar.close()
    with torch.no_grad():
        masks = (model.postprocess(torch.as_tensor(run.logits).float(), meta) > 0).numpy()
        if float_masks is None:
            float_masks, _ = model.predict(image, np.asarray(boxes, np.float32))
    return Inference(run, masks, float_masks, np.asarray(boxes, np.float64), time.perf_counter() - start)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def summary_record(inf: Inference, image_name: str, program, bundle, clock_mhz: float) -> dict:
    from hw.runtime import run_record

    h = bundle.header
    cfg = program.config
    return {"image": image_name, "boxes": inf.boxes.tolist(), "bundle": {"model": h.model, "recipe": h.recipe,
            "weight_bits": h.weight_bits, "act_bits": h.act_bits},
            "core": {"digest": cfg.digest, "rows": cfg.rows, "cols": cfg.cols, "act_bits": cfg.act_bits,
                     "weight_bits": cfg.weight_bits},
            "equal_to_reference": inf.run.ok, "iou_vs_float": [round(_iou(a, f), 4) for a, f in
                                                               zip(inf.masks, inf.float_masks)],
            "predicted_iou": [round(float(v), 4) for v in inf.run.iou], "seconds": round(inf.seconds, 2),
            **run_record(inf.run, clock_mhz)}


def layers_markdown(inf: Inference, record: dict, command: str) -> str:
    from hw.runtime import layer_table, verdict

    run = inf.run
    lines = [f"# `samhw infer`: {record['image']} on {run.backend}", "",
             f"Generated by `{command}`.", "",
             f"Bundle {record['bundle']['model']} {record['bundle']['recipe']} W{record['bundle']['weight_bits']}"
             f"A{record['bundle']['act_bits']}; core `{record['core']['digest']}` ({run.pes} PEs); "
             f"{len(inf.boxes)} box(es). Cycles: {run.cycles} ({run.cycles_of('encoder')} encoder, "
             f"{run.cycles_of('decoder')} decoder), {record['latency_ms']:.2f} ms at {record['clock_mhz']:g} MHz. "
             f"Wall time {inf.seconds:.1f} s (host steps {run.host_seconds:.1f} s, backend {run.backend_seconds:.1f} s).",
             "", verdict(run) + (": every layer equals sw/ref, so the masks are sw/ref's." if run.ok else "."), "",
             *layer_table(run), ""]
    return "\n".join(lines)


def write_outputs(out: Path, inf: Inference, image: np.ndarray, image_name: str, record: dict, command: str) -> None:
    """All outputs into ``out`` at once (a temporary folder renamed into place)."""
    from .atomic_file import atomic_directory
    from .report.overlay import save_overlay

    with atomic_directory(out) as tmp:
        np.savez_compressed(tmp / "masks.npz", masks=inf.masks, float_masks=inf.float_masks, logits=inf.run.logits,
                            iou=inf.run.iou, boxes=inf.boxes)
        row = dict(name=image_name, image=image, boxes=inf.boxes, float_masks=inf.float_masks, quant_masks=inf.masks,
                   ious=record["iou_vs_float"])
        save_overlay([row], tmp / "overlay.png", f"accelerator ({inf.run.backend})")
        (tmp / "layers.md").write_text(layers_markdown(inf, record, command))
        (tmp / "summary.json").write_text(json.dumps(record, indent=1) + "\n")


def run_infer(bundle_dir: str, image_path: str, box_values, backend_name: str = "fsim", program_dir: str | None = None,
              core: str | None = None, out: str = "runs/infer", work: str = "sim_build", checkpoint: str | None = None,
              clock_mhz: float = 100.0, progress: bool = True, command: str = "samhw infer",
              only: list[str] | None = None, port: str | None = None,
              baud: int = 3_000_000) -> tuple[Inference, dict]:
    """``samhw infer`` (see the module docstring); every input is checked before any work starts."""
    from .bundle import load_bundle
    from .data.images import load_rgb
    from .models import load_model

    if backend_name not in BACKENDS:
        raise SamhwError(f"unknown backend '{backend_name}' (one of {', '.join(BACKENDS)})")
    out_path = check_out(Path(out))
    image = load_rgb(image_path)
    boxes = check_boxes(box_values, *image.shape[:2])
    bundle = load_bundle(bundle_dir)
    offload = layer_filter(only)
    program = resolve_program(bundle, program_dir, core, offload)
    model = load_model(bundle.header.model, checkpoint)
    backend = make_backend(backend_name, program, work, port, baud)
    try:
        inf = infer_image(model, bundle, program, backend, image, boxes, progress, offload=offload,
                          opened=backend_name == "board")
    finally:
        backend.close()
    record = summary_record(inf, Path(image_path).name, program, bundle, clock_mhz)
    write_outputs(out_path, inf, image, Path(image_path).name, record, command)
    return inf, record
