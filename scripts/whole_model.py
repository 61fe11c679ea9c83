"""The whole model on the accelerator over coco_tiny val images, every layer checked, as generated reports.

    python scripts/whole_model.py fsim runs/bundle_ahcptq_w4a4 runs/bundle_minmax_w8a8 \
        --report docs/whole_model_fsim.md                       # all 80 val images, all 804 boxes
    python scripts/whole_model.py verilator runs/bundle_ahcptq_w4a4 --images 1 --boxes 1 \
        --report docs/whole_model_cosim.md                      # one image, one box, on the core's RTL

Per bundle the program is compiled for ``--core`` (default w8-16x16) once; per val image (file-name order)
the model preprocesses the image and its ground-truth boxes (crowd boxes are never prompted), and
``hw.runtime.run_model`` runs every quantized layer on the backend (decoder: four boxes per call, one
invocation run per box) with every host step in sw/ref, comparing each layer's output codes with sw/ref's
on the same input codes. Every ``--reference-every``-th image (and the first) is also run through sw/ref
alone (``reference_model``) and its logits, IoU predictions and postprocessed masks compared bit for bit
with the accelerator's. The verilator backend additionally compares every output word with the
functional model and every run's cycle counter with the cycle model.

Each image's record is appended to ``--state`` (JSON lines, default next to the report) as soon as it is
done, so an interrupted run continues where it stopped (``--resume``) and the report can be rewritten
from what is there at any time (``--report-only``). One BLAS thread (see hw/runtime/threads.py). Exit 1
on any mismatch.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: see hw/runtime/threads.py

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw.compiler.model import compile_bundle  # noqa: E402
from hw.core.config import load_core_config  # noqa: E402
from hw.runtime import layer_table, reference_model, run_model, run_record, verdict  # noqa: E402
from hw.runtime.report import DEFAULT_CLOCK_MHZ  # noqa: E402
from hw.runtime.threads import single_blas_thread  # noqa: E402
from sw.atomic_file import write_atomic  # noqa: E402
from sw.bundle import load_bundle  # noqa: E402
from sw.infer import make_backend  # noqa: E402


def val_items(data: str):
    from sw.data.coco import resolve_coco_folder

    split = resolve_coco_folder(data, "val")
    for image_id in split.image_ids:
        yield split.image_path(image_id), np.array([i.box_xyxy for i in split.instances(image_id)], np.float64)


def _masks(model, logits: np.ndarray, meta) -> np.ndarray:
    import torch

    with torch.no_grad():
        return (model.postprocess(torch.as_tensor(logits).float(), meta) > 0).numpy()


def run_bundle(path: str, args, done: dict, out) -> None:
    """Every image of the selection not yet in ``done`` (image name -> record); records go to ``out``."""
    import torch

    from sw.data.images import load_rgb
    from sw.models import load_model

    bundle = load_bundle(path)
    config = load_core_config(args.core)
    key = bundle_key(bundle)
    start = time.perf_counter()
    program = compile_bundle(bundle, config)
    compile_s = time.perf_counter() - start
    model = load_model(bundle.header.model)
    start = time.perf_counter()
    backend = make_backend(args.backend, program, args.work)
    if args.backend == "verilator":
        backend.sim.build()      # Verilog generation and the Verilator build (cached per design), timed apart
    build_s = time.perf_counter() - start
    opened = False
    try:
        for index, (image_path, boxes) in enumerate(val_items(args.data)):
            if args.images is not None and index >= args.images:
                break
            if args.boxes is not None:
                boxes = boxes[:args.boxes]
            if done.get((key, image_path.name)):
                continue
            image = load_rgb(image_path)
            with torch.no_grad():
                x, meta = model.preprocess(image)
                box_in = model.boxes_to_input(boxes.astype(np.float32), meta) if len(boxes) else torch.zeros(0, 4)
            x, box_in = x.double().numpy(), box_in.double().numpy()
            t0 = time.perf_counter()
            with single_blas_thread():
                run = run_model(bundle, program, backend, x, box_in, opened=opened)
            opened = True
            seconds = time.perf_counter() - t0
            record = {"bundle": key, "bundle_path": path, "image": image_path.name, "index": index, "boxes": len(boxes),
                      "compile_seconds": round(compile_s, 1), "build_seconds": round(build_s, 1),
                      "run_seconds": round(seconds, 2),
                      **{k: v for k, v in run_record(run).items() if k != "layers"}}
            if args.backend == "verilator" or index % args.reference_every == 0:
                t1 = time.perf_counter()
                with single_blas_thread():
                    emb, logits, iou = reference_model(bundle, x, box_in)
                record.update(reference_checked=True, reference_seconds=round(time.perf_counter() - t1, 2),
                              embedding_identical=bool(np.array_equal(emb, run.embedding)),
                              logits_identical=bool(np.array_equal(logits, run.logits)),
                              iou_identical=bool(np.array_equal(iou, run.iou)),
                              masks_identical=bool(len(boxes) == 0 or np.array_equal(_masks(model, logits, meta),
                                                                                       _masks(model, run.logits, meta))))
            if args.backend == "verilator":
                record["backend_split_seconds"] = {k: round(v, 1) for k, v in backend.seconds.items()}
                record["layer_table"] = layer_table(run)
                record["layers"] = run_record(run)["layers"]
            out.write(json.dumps(record) + "\n")
            out.flush()
            done[key, image_path.name] = record
            print(f"{key} {image_path.name}: {len(boxes)} boxes, {verdict(run)}, {run.cycles} cycles, "
                  f"{seconds:.0f} s" + (f", reference {'identical' if record.get('logits_identical') else 'DIFFERS'}"
                                        if record.get("reference_checked") else ""), flush=True)
    finally:
        backend.close()


def bundle_key(bundle) -> str:
    h = bundle.header
    return f"{h.model} {h.recipe} W{h.weight_bits}A{h.act_bits}"


def read_state(path: Path) -> dict:
    done = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[r["bundle"], r["image"]] = r
    return done


def _fsim_report(records: list[dict], args, command: str, config) -> list[str]:
    lines = []
    by_bundle: dict[str, list[dict]] = {}
    for r in records:
        by_bundle.setdefault(r["bundle"], []).append(r)
    lines += ["| bundle | images | boxes | invocation runs | output codes compared | mismatches | images checked "
              "against sw/ref alone | logits, IoU and masks identical | cycles per image (encoder) | cycles per box "
              "(decoder) | median s per image |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, rs in by_bundle.items():
        checked = [r for r in rs if r.get("reference_checked")]
        same = [r for r in checked if r["logits_identical"] and r["iou_identical"] and r["masks_identical"]
                and r["embedding_identical"]]
        boxes = sum(r["boxes"] for r in rs)
        enc = sorted({r["encoder_cycles"] for r in rs})
        dec = sum(r["decoder_cycles"] for r in rs) / boxes if boxes else 0
        lines.append(f"| {key} | {len(rs)} | {boxes} | {sum(r['invocation_runs'] for r in rs)} | "
                     f"{sum(r['outputs_compared'] for r in rs)} | {sum(r['mismatches'] for r in rs)} | {len(checked)} | "
                     f"{len(same)} of {len(checked)} | {', '.join(map(str, enc))} | {dec:.0f} | "
                     f"{np.median([r['run_seconds'] for r in rs]):.0f} |")
    lines.append("")
    for key, rs in by_bundle.items():
        lines += [f"## {key}", "", "| # | image | boxes | invocation runs | output codes compared | mismatches | "
                  "cycles | latency ms | sw/ref alone | s |", "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|"]
        for r in sorted(rs, key=lambda r: r["index"]):
            ref = ("identical" if r["logits_identical"] and r["masks_identical"] and r["iou_identical"] else "DIFFERS") \
                if r.get("reference_checked") else ""
            lines.append(f"| {r['index']} | {r['image']} | {r['boxes']} | {r['invocation_runs']} | {r['outputs_compared']} | "
                         f"{r['mismatches']} | {r['cycles']} | {r['latency_ms']:.1f} | {ref} | {r['run_seconds']:.0f}"
                         + (f" ({r['note']})" if r.get("note") else "") + " |")
        lines.append("")
    return lines


def _limit(r: dict) -> list[str]:
    """What the wall time of an RTL run went to, as one paragraph."""
    split = r.get("backend_split_seconds")
    if not split:
        return []
    run = r["run_seconds"]
    return [f"What limits the wall time: simulating the core, {split['rtl']:.0f} s of the {run:.0f} s "
            f"({100 * split['rtl'] / run:.0f} %, one simulator thread evaluating the whole PE array every cycle, "
            f"{r['cycles'] / split['rtl']:.0f} cycles/s on this shared 2-core machine); memory traffic through the "
            f"bulk port ($readmemh / $writememh) {split['memory']:.0f} s; the functional and cycle models "
            f"{split['fsim']:.0f} s; the host steps and the sw/ref check of every layer the rest.", ""]


def write_report(path: Path, records: list[dict], args, command: str, state: Path) -> None:
    config = load_core_config(args.core)
    total_images = sum(1 for _ in val_items(args.data)) if args.images is None else args.images
    bundles = len(args.bundles)
    title = ("Whole model on the functional model: every layer equal to sw/ref" if args.backend == "fsim" else
             "Whole model on the core's RTL (Verilator): every layer equal to sw/ref and to the functional model")
    mismatches = sum(r["mismatches"] for r in records) + sum(r.get("word_mismatches") or 0 for r in records)
    ref_bad = sum(1 for r in records if r.get("reference_checked") and not (
        r["logits_identical"] and r["masks_identical"] and r["iou_identical"] and r["embedding_identical"]))
    lines = [f"# {title}", "", f"Generated by `{command}`; do not edit by hand (records: `{state}`).", "",
             f"Core `{config.digest}` ({config.rows}x{config.cols} PEs, A{config.act_bits}W{config.weight_bits}); "
             f"coco_tiny val images in file-name order with their ground-truth boxes; host {platform.machine()}, "
             f"{os.cpu_count()} CPUs, one BLAS thread. Each quantized layer's output codes are compared with sw/ref's "
             "on the same input codes (`hw/runtime/model.py`); the images marked also ran through sw/ref alone and "
             "their embedding, mask logits, IoU predictions and postprocessed masks were compared bit for bit. "
             f"Latency: cycles at {DEFAULT_CLOCK_MHZ:g} MHz.", "",
             f"Progress: {len(records)} of {total_images * bundles} image runs ({bundles} bundle(s) x {total_images} "
             f"images). **{mismatches} mismatches**, {ref_bad} images whose sw/ref-alone run differs.", ""]
    if args.backend == "fsim":
        lines += _fsim_report(records, args, command, config)
    else:
        for r in records:
            cyc_bad = r.get("cycle_differences")
            lines += [f"## {r['bundle']}, {r['image']}, {r['boxes']} box(es)", "",
                      f"Wall time {r['run_seconds'] / 60:.1f} min for the model run (the simulator's start and "
                      f"memory loads, every layer on the RTL, the functional and cycle models of each layer for the "
                      f"word and cycle comparison, the host steps and the sw/ref check of every layer), plus "
                      f"{r['compile_seconds']:.0f} s compiling the program, {r.get('build_seconds', 0):.0f} s generating "
                      f"and building the simulator (cached per design) and {r.get('reference_seconds', 0):.0f} s for "
                      f"sw/ref alone. {r['cycles']} RTL cycles ({r['encoder_cycles']} encoder, {r['decoder_cycles']} "
                      f"decoder), {r['cycles'] / max(r['backend_seconds'], 1e-9):.0f} cycles per second of backend "
                      f"time" + (" (RTL runs {rtl:.0f} s, memory loads and dumps {memory:.0f} s, functional and cycle "
                                  "models {fsim:.0f} s)".format(**r["backend_split_seconds"])
                                  if "backend_split_seconds" in r else "") +
                      f". {r['outputs_compared']} output codes compared with sw/ref: "
                      f"{r['mismatches']} mismatches; {r['words_compared']} output words compared with fsim: "
                      f"{r['word_mismatches']} differ; {cyc_bad} layers whose RTL cycles differ from the cycle model; "
                      f"mask logits {'identical' if r.get('logits_identical') else 'DIFFERENT'} to sw/ref alone, "
                      f"masks {'identical' if r.get('masks_identical') else 'DIFFERENT'}.", "", *_limit(r),
                      *r["layer_table"], ""]
    write_atomic(path, "\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", choices=["fsim", "verilator"])
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--core", default="w8-16x16")
    parser.add_argument("--data", default=None, help="COCO root (default ../shared/data/coco_tiny)")
    parser.add_argument("--images", type=int, help="first N val images (default all)")
    parser.add_argument("--boxes", type=int, help="first N boxes of each image (default all)")
    parser.add_argument("--reference-every", type=int, default=8,
                        help="also run sw/ref alone on every N-th image (default 8; the verilator backend: every image)")
    parser.add_argument("--work", default="sim_build", help="Verilator build folder")
    parser.add_argument("--report", required=True)
    parser.add_argument("--state", help="JSON-lines records (default: REPORT with .jsonl)")
    parser.add_argument("--resume", action="store_true", help="keep the records in --state and run the rest")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from --state, run nothing")
    args = parser.parse_args(argv)
    if args.data is None:
        from sw.data.coco import DEFAULT_COCO_ROOT

        args.data = str(DEFAULT_COCO_ROOT)
    report = Path(args.report)
    state = Path(args.state) if args.state else report.with_suffix(".jsonl")
    command = "python scripts/whole_model.py " + " ".join(a for a in (argv if argv is not None else sys.argv[1:])
                                                          if a not in ("--resume", "--report-only"))
    if not (args.resume or args.report_only):
        state.unlink(missing_ok=True)
    done = read_state(state)
    if not args.report_only:
        state.parent.mkdir(parents=True, exist_ok=True)
        with state.open("a") as out:
            for path in args.bundles:
                run_bundle(path, args, done, out)
    records = list(read_state(state).values())
    write_report(report, records, args, command, state)
    bad = sum(r["mismatches"] + (r.get("word_mismatches") or 0) + (r.get("cycle_differences") or 0) for r in records)
    bad += sum(1 for r in records if r.get("reference_checked") and not r["logits_identical"])
    print(f"wrote {report}: {len(records)} image runs, {bad} differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
