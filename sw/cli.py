"""``samhw``: one entry point, one subcommand per step of the flow.

Bad input never shows a traceback: :class:`SamhwError` is printed as one line and the exit status
is 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import SamhwError
from .models.registry import DEFAULT_MODEL, MODEL_NAMES
from .quant.config import BIT_CONFIGS, RECIPES

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco_tiny"


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"one of {', '.join(MODEL_NAMES)} (default {DEFAULT_MODEL})")
    p.add_argument("--checkpoint", help="weights file (required for sam_vit_*; LiteMedSAM uses its bundled weights)")


def _add_quant(p: argparse.ArgumentParser, recipe_required: bool = False, recipe_default: str | None = None) -> None:
    p.add_argument("--recipe", required=recipe_required, default=recipe_default, help=f"one of {', '.join(RECIPES)}")
    p.add_argument("--bits", default="w8a8", help=f"one of {', '.join(BIT_CONFIGS)} (default w8a8)")
    p.add_argument("--calib", help="calibration source: a COCO root (train split, GT boxes) or an image folder; "
                                   "default: --data if given, else scikit-image's bundled photographs")
    p.add_argument("--calib-images", type=int, default=32, help="number of calibration images (default 32)")
    p.add_argument("--max-prompts", type=int, default=16, help="box prompts per calibration image (default 16)")
    p.add_argument("--seed", type=int, default=0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samhw", description="SAM quantization and hardware co-design toolkit")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="main job: quantize, segment sample photographs, save overlay + summary")
    _add_model(p)
    _add_quant(p, recipe_default="minmax")
    p.add_argument("--data", help="COCO-format root; evaluates its val split instead of the sample photographs")
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--out", default="runs/main", help="output folder (default runs/main)")

    p = sub.add_parser("quantize", help="calibrate a quantized model and save its quantization state")
    _add_model(p)
    _add_quant(p, recipe_required=True)
    p.add_argument("--out", required=True, help="state file to write (.safetensors)")

    p = sub.add_parser("eval", help="box-prompted instance segmentation benchmark on a COCO-format folder")
    _add_model(p)
    _add_quant(p)
    p.add_argument("--quant-state", help="state file from 'samhw quantize' (instead of --recipe)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="COCO-format root (default ../shared/data/coco_tiny)")
    p.add_argument("--split", default="val")
    p.add_argument("--boxes", help="detector results json (COCO format); default: ground-truth boxes")
    p.add_argument("--score-threshold", type=float, default=0.05)
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--json", help="write the result record here")

    p = sub.add_parser("export", help="write the integer bundle (weights, codes, requant constants) of a quantized model")
    _add_model(p)
    _add_quant(p)
    p.set_defaults(calib=str(DEFAULT_DATA))
    p.add_argument("--quant-state", help="state file from 'samhw quantize' (instead of calibrating with --recipe)")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--capture-inputs", action="store_true",
                   help="also save each layer's input codes on the first calibration image to <out>.inputs.npz "
                        "(what 'samhw simulate' feeds the hardware)")

    p = sub.add_parser("inspect", help="validate a bundle and print a per-layer summary (exit 1 if invalid)")
    p.add_argument("bundle", help="bundle directory")

    p = sub.add_parser("generate", help="Verilog + design.json of a GEMM engine for one bundle layer")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--layer", required=True, help="linear or attention layer name (see 'samhw inspect')")
    p.add_argument("--op", choices=["scores", "values"], help="for an attention layer: QK^T (scores) or A.V (values)")
    p.add_argument("--pes", default="4x4", help="PE array rows x columns (default 4x4)")
    p.add_argument("--rows", type=int, default=64, help="rows (tokens / queries) the on-chip memories hold (default 64)")
    p.add_argument("--out", required=True, help="output folder")

    p = sub.add_parser("simulate", help="cocotb + Verilator co-simulation of generated engines on real bundle tensors")
    p.add_argument("bundle", help="bundle directory (its captured inputs: <bundle>.inputs.npz)")
    p.add_argument("--inputs", help="captured input codes (default <bundle>.inputs.npz, see sw/export/capture.py)")
    p.add_argument("--layer", help="one layer instead of the acceptance set (with --op for attention)")
    p.add_argument("--op", choices=["scores", "values"])
    p.add_argument("--pes", help="PE array rows x columns (default: the acceptance set's choice, 4x4 for --layer)")
    p.add_argument("--work", default="sim_build", help="build folder (default sim_build)")
    p.add_argument("--json", help="write the per-layer results here")
    p.add_argument("--report", help="write a Markdown table of the run here (e.g. docs/cosim.md)")
    return parser


def _cmd_quantize(args, progress: bool) -> int:
    from .models import load_model
    from .quant.state import save_quant_state
    from .workflow import quantize_from_args, seed_everything

    seed_everything(args.seed)
    model = load_model(args.model, args.checkpoint)
    qmodel, seconds = quantize_from_args(args, model, progress)
    save_quant_state(qmodel, args.out, extra={"calib_seconds": round(seconds, 3), "calib_images": args.calib_images})
    print(f"wrote {args.out} ({args.recipe} {args.bits}, calibration {seconds:.1f} s)")
    return 0


def _cmd_eval(args, progress: bool) -> int:
    from .data.coco import load_detections, resolve_coco_folder
    from .models import load_model
    from .quant.state import load_quant_state
    from .workflow import evaluate, quantize_from_args, seed_everything

    seed_everything(args.seed)
    split = resolve_coco_folder(args.data, args.split)
    detections = load_detections(args.boxes, split, args.score_threshold) if args.boxes else None
    model = load_model(args.model, args.checkpoint)
    record = {"model": model.name, "recipe": "fp", "dataset": f"{Path(args.data).name}/{args.split}"}
    qmodel = None
    if args.quant_state:
        qmodel = load_quant_state(model, args.quant_state)
    elif args.recipe:
        qmodel, seconds = quantize_from_args(args, model, progress)
        record["calib_seconds"] = round(seconds, 2)
    if qmodel is not None:
        cfg = qmodel.quant_config
        record.update(recipe=cfg.recipe, weight_bits=cfg.weight_bits, act_bits=cfg.act_bits)
        result = evaluate(split, qmodel, reference=model, detections=detections, limit_images=args.limit,
                          progress=progress)
    else:
        result = evaluate(split, model, detections=detections, limit_images=args.limit, progress=progress)
    summary = result.to_dict()
    summary.pop("per_instance", None)
    record.update(summary)
    print(json.dumps(record, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    return 0


def _cmd_export(args, progress: bool) -> int:
    from .export.bundle import export_bundle
    from .models import load_model
    from .quant.state import load_quant_state
    from .workflow import calibration_items, quantize_from_args, seed_everything

    seed_everything(args.seed)
    model = load_model(args.model, args.checkpoint)
    if args.quant_state:
        qmodel = load_quant_state(model, args.quant_state)
        items, _ = calibration_items(args.calib, args.calib_images, args.max_prompts, args.seed)
    elif args.recipe:
        qmodel, _ = quantize_from_args(args, model, progress)
        items, _ = calibration_items(args.calib, args.calib_images, args.max_prompts, args.seed)
    else:
        raise SamhwError("export needs --recipe or --quant-state")
    out = export_bundle(qmodel, items, args.out, progress=progress)
    cfg = qmodel.quant_config
    print(f"wrote {out} ({model.name} {cfg.recipe} {cfg.bits_name})")
    if args.capture_inputs:
        from .export.capture import capture_inputs, save_inputs

        print(f"wrote {save_inputs(capture_inputs(qmodel, items[0]), out)}")
    return 0


def _cmd_inspect(args, progress: bool) -> int:
    from .ref.bundle import BundleError, load_bundle
    from .ref.summary import summarize

    try:
        print(summarize(load_bundle(args.bundle)))
    except BundleError as exc:
        print(f"samhw: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_generate(args, progress: bool) -> int:
    from hw.generate import generate_engine, parse_pes

    from .ref.bundle import load_bundle

    layer = load_bundle(args.bundle).layer(args.layer)
    try:
        design = generate_engine(layer, args.out, args.op, parse_pes(args.pes), args.rows)
    except ValueError as exc:
        raise SamhwError(str(exc)) from None
    print(f"wrote {Path(args.out) / design['verilog']} and design.json: {design['kind']} engine "
          f"{design['pe_rows']}x{design['pe_cols']} PEs, reduction {design['reduction']}, outputs {design['outputs']}, "
          f"{len(design['memories'])} memories (~{design['ebr_estimate']} EBR)")
    return 0


def _cmd_simulate(args, progress: bool) -> int:
    from sim.runner import simulate_command

    try:
        return simulate_command(args)
    except ValueError as exc:
        raise SamhwError(str(exc)) from None


def _cmd_run(args, progress: bool) -> int:
    from .main_job import run_main_job

    return run_main_job(args, progress)


COMMANDS = {"quantize": _cmd_quantize, "eval": _cmd_eval, "run": _cmd_run, "export": _cmd_export,
            "inspect": _cmd_inspect, "generate": _cmd_generate, "simulate": _cmd_simulate}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args, progress=not args.no_progress)
    except SamhwError as exc:
        print(f"samhw: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
