"""``samhw``: one entry point, one subcommand per step of the flow.

Bad input never shows a traceback: :class:`SamhwError` is printed as one line and the exit status
is 2.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .data.coco import DEFAULT_COCO_ROOT
from .data.sources import CALIB_RULE, DEFAULT_CALIB_IMAGES, CalibOptions
from .errors import SamhwError
from .models.registry import DEFAULT_MODEL, MODEL_NAMES
from .quant.config import BIT_CONFIGS, RECIPES
from .verify.checked import CheckedModelSpec

NO_PROGRESS_HELP = "hide progress bars"


def _subcommand(sub, name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand parser that also takes ``--no-progress`` after the subcommand's name."""
    p = sub.add_parser(name, help=help, description=description or help)
    p.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS, help=NO_PROGRESS_HELP)
    return p


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"one of {', '.join(MODEL_NAMES)} (default {DEFAULT_MODEL})")
    p.add_argument("--checkpoint", help="weights file (required for sam_vit_*; LiteMedSAM uses its bundled weights)")


def _add_quant(p: argparse.ArgumentParser, recipe_required: bool = False, recipe_default: str | None = None) -> None:
    p.add_argument("--recipe", required=recipe_required, default=recipe_default, help=f"one of {', '.join(RECIPES)}")
    p.add_argument("--bits", default="w8a8", help=f"one of {', '.join(BIT_CONFIGS)} (default w8a8)")
    p.add_argument("--calib", help=CALIB_RULE)
    p.add_argument("--calib-images", type=int, default=DEFAULT_CALIB_IMAGES,
                   help=f"number of calibration images, the first in file-name order (default {DEFAULT_CALIB_IMAGES})")
    p.add_argument("--max-prompts", type=int, default=16, help="box prompts per calibration image (default 16)")
    p.add_argument("--seed", type=int, default=0)


def _calib_options(args) -> CalibOptions:
    return CalibOptions(args.calib, args.calib_images, args.max_prompts, args.seed)


def _add_checked_model(p: argparse.ArgumentParser) -> None:
    """The model a ``samhw verify`` report checks (sw/verify/checked.py)."""
    d = CheckedModelSpec()
    _add_model(p)
    p.add_argument("--recipe", default=d.recipe, help=f"one of {', '.join(RECIPES)} (default {d.recipe})")
    p.add_argument("--bits", default=d.bits, help=f"one of {', '.join(BIT_CONFIGS)} (default {d.bits})")
    p.add_argument("--quant-state", help="calibrated state (skips calibration; --recipe/--bits come from it)")
    p.add_argument("--data", default=d.data, help="COCO root whose val split is checked (default ../shared/data/coco_tiny)")
    p.add_argument("--calib", help="calibration images, which also set the bundle's host-code ranges: a COCO root "
                                   "(train split) or an image folder (default: --data, as the reports in docs/ are)")
    p.add_argument("--calib-images", type=int, default=d.calib_images,
                   help=f"number of calibration images (default {d.calib_images})")


def _checked_model_check(checks, name: str, report: str, help: str) -> argparse.ArgumentParser:
    """A ``samhw verify`` check of one model (sw/verify/checked.py) writing docs/<report>_<recipe>_<bits>.md."""
    path = f"docs/{report}_<recipe>_<bits>.md"
    p = _subcommand(checks, name, f"{help} ({path})")
    _add_checked_model(p)
    p.add_argument("--out", help=f"report path (default {path})")
    return p


def _checked_spec(args) -> CheckedModelSpec:
    return CheckedModelSpec(args.model, args.checkpoint, args.recipe, args.bits, args.quant_state, args.data,
                            args.calib, args.calib_images)


def _add_verify(sub) -> None:
    v = sub.add_parser("verify", help="measured checks of a calibrated model, written as reports (docs/ by default)",
                       description="Measured checks of a calibrated model against the integer reference and itself. "
                                   "Each writes a Markdown report whose first lines name the command that made it.")
    checks = v.add_subparsers(dest="check", required=True)
    p = _checked_model_check(checks, "layers", "crosscheck", "integer reference vs fake-quant model at every "
                             "quantized layer; exit 1 if a layer is below 99.9 % equal or differs by more than one code")
    p.add_argument("--images", type=int, default=4, help="val images to check on (default 4)")
    p = _checked_model_check(checks, "masks", "ref_masks", "whole-model masks of the integer reference vs the "
                             "fake-quant model, and their accuracy")
    p.add_argument("--limit", type=int, default=5, help="val images, name order (default 5)")
    p.add_argument("--workers", type=int, default=1, help="processes, one image each at a time, one thread each")
    p = _checked_model_check(checks, "threads", "thread_agreement", "how far the float and fake-quant masks move "
                             "between 1 and N torch threads (and a histogram next to the report)")
    p.add_argument("--threads", type=int, default=2, help="thread count compared with 1 (default 2)")
    p.add_argument("--limit", type=int, help="first N val images (name order; default all)")
    p = _subcommand(checks, "cag-error", "clipping and error of every CAG input quantizer across saved states "
                                         "(docs/cag_error.md and .png)")
    p.add_argument("--states", nargs="+", required=True, help="calibrated states from 'samhw quantize'")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"one of {', '.join(MODEL_NAMES)} (default {DEFAULT_MODEL})")
    p.add_argument("--data", default=str(DEFAULT_COCO_ROOT), help="COCO root (default ../shared/data/coco_tiny)")
    p.add_argument("--images", type=int, default=2, help="val images, name order (default 2)")
    p.add_argument("--out", default="docs/cag_error.md", help="report path (default docs/cag_error.md)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samhw", description="SAM quantization and hardware co-design toolkit")
    parser.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    p = _subcommand(sub, "run", "main job: quantize, segment sample photographs, save overlay + summary",
                    f"Main job: quantize, segment sample photographs, save overlay + summary. {CALIB_RULE}.")
    _add_model(p)
    _add_quant(p, recipe_default="minmax")
    p.add_argument("--data", help="COCO-format root; evaluates its val split instead of the sample photographs")
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--out", default="runs/main", help="output folder (default runs/main)")

    p = _subcommand(sub, "quantize", "calibrate a quantized model and save its quantization state",
                    f"Calibrate a quantized model and save its quantization state. {CALIB_RULE}.")
    _add_model(p)
    _add_quant(p, recipe_required=True)
    p.add_argument("--out", required=True, help="state file to write (.safetensors)")

    p = _subcommand(sub, "eval", "box-prompted instance segmentation benchmark on a COCO-format folder",
                    "Box-prompted instance segmentation benchmark on a COCO-format folder: the float model, a "
                    f"saved state (--quant-state) or a model calibrated here (--recipe). {CALIB_RULE}.")
    _add_model(p)
    _add_quant(p)
    p.add_argument("--quant-state", help="state file from 'samhw quantize' (instead of --recipe)")
    p.add_argument("--data", default=str(DEFAULT_COCO_ROOT), help="COCO-format root (default ../shared/data/coco_tiny)")
    p.add_argument("--split", default="val")
    p.add_argument("--boxes", help="detector results json (COCO format); default: ground-truth boxes")
    p.add_argument("--score-threshold", type=float, default=0.05)
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--json", help="write the result record here")

    p = _subcommand(sub, "export", "write the integer bundle (weights, codes, requant constants) of a quantized model",
                    "Write the integer bundle of a quantized model. The calibration images also set the bundle's "
                    f"host-code ranges, so they are loaded with --quant-state too. {CALIB_RULE}.")
    _add_model(p)
    _add_quant(p)
    p.add_argument("--quant-state", help="state file from 'samhw quantize' (instead of calibrating with --recipe)")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--capture-inputs", action="store_true",
                   help="also save each layer's input codes on the first calibration image to <out>.inputs.npz "
                        "(what 'samhw simulate' feeds the hardware)")

    p = _subcommand(sub, "inspect", help="validate a bundle and print a per-layer summary (exit 1 if invalid)")
    p.add_argument("bundle", help="bundle directory")

    p = _subcommand(sub, "generate", help="Verilog + design.json of a GEMM engine for one bundle layer")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--layer", required=True, help="linear or attention layer name (see 'samhw inspect')")
    p.add_argument("--op", choices=["scores", "values"], help="for an attention layer: QK^T (scores) or A.V (values)")
    p.add_argument("--pes", default="4x4", help="PE array rows x columns (default 4x4)")
    p.add_argument("--rows", type=int, default=64, help="rows (tokens / queries) the on-chip memories hold (default 64)")
    p.add_argument("--out", required=True, help="output folder")

    p = _subcommand(sub, "simulate", help="cocotb + Verilator co-simulation of generated engines on real bundle tensors")
    p.add_argument("bundle", help="bundle directory (its captured inputs: <bundle>.inputs.npz)")
    p.add_argument("--inputs", help="captured input codes (default <bundle>.inputs.npz, see sw/export/capture.py)")
    p.add_argument("--layer", help="one layer instead of the acceptance set (with --op for attention)")
    p.add_argument("--op", choices=["scores", "values"])
    p.add_argument("--pes", help="PE array rows x columns (default: the acceptance set's choice, 4x4 for --layer)")
    p.add_argument("--work", default="sim_build", help="build folder (default sim_build)")
    p.add_argument("--json", help="write the per-layer results here")
    p.add_argument("--report", help="write a Markdown table of the run here (e.g. docs/cosim.md)")

    _add_verify(sub)
    _subcommand(sub, "recipes", "list each recipe's settings that differ from the defaults (sw/quant/config.py)")
    return parser


def _cmd_quantize(args, progress: bool) -> int:
    from .models import load_model
    from .quant.state import save_quant_state
    from .seeding import seed_everything
    from .workflow import quantize_with

    seed_everything(args.seed)
    model = load_model(args.model, args.checkpoint)
    calibrated = quantize_with(model, args.recipe, args.bits, _calib_options(args), progress)
    save_quant_state(calibrated.qmodel, args.out, extra=calibrated.metadata())
    print(f"wrote {args.out} ({args.recipe} {args.bits}, calibration {calibrated.seconds:.1f} s)")
    return 0


def _cmd_eval(args, progress: bool) -> int:
    from .data.coco import load_detections, resolve_coco_folder
    from .eval.benchmark import evaluate_model
    from .models import load_model
    from .quant.state import load_quant_state, read_state_metadata
    from .seeding import seed_everything
    from .workflow import quantize_with

    seed_everything(args.seed)
    split = resolve_coco_folder(args.data, args.split)
    detections = load_detections(args.boxes, split, args.score_threshold) if args.boxes else None
    model = load_model(args.model, args.checkpoint)
    record = {"model": model.name, "recipe": "fp", "dataset": f"{Path(args.data).name}/{args.split}"}
    qmodel = None
    if args.quant_state:
        qmodel = load_quant_state(model, args.quant_state)
        # The calibration seconds, images and threads the state recorded (older states lack some).
        record.update(read_state_metadata(args.quant_state).get("extra", {}))
    elif args.recipe:
        calibrated = quantize_with(model, args.recipe, args.bits, _calib_options(args), progress)
        qmodel = calibrated.qmodel
        record.update(calibrated.metadata())
    if qmodel is not None:
        cfg = qmodel.quant_config
        record.update(recipe=cfg.recipe, weight_bits=cfg.weight_bits, act_bits=cfg.act_bits)
        result = evaluate_model(split, qmodel, reference=model, detections=detections, limit_images=args.limit,
                                progress=progress)
    else:
        result = evaluate_model(split, model, detections=detections, limit_images=args.limit, progress=progress)
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
    from .seeding import seed_everything
    from .workflow import quantize_with

    seed_everything(args.seed)
    model = load_model(args.model, args.checkpoint)
    if args.quant_state:
        qmodel = load_quant_state(model, args.quant_state)
        items, _ = _calib_options(args).items()
    elif args.recipe:
        calibrated = quantize_with(model, args.recipe, args.bits, _calib_options(args), progress)
        qmodel, items = calibrated.qmodel, calibrated.items
    else:
        raise SamhwError("export needs --recipe or --quant-state")
    out = export_bundle(qmodel, items, args.out, progress=progress)
    cfg = qmodel.quant_config
    print(f"wrote {out} ({model.name} {cfg.recipe} {cfg.bits_name})")
    if args.capture_inputs:
        from .bundle import save_captured_inputs
        from .export.capture import capture_inputs

        print(f"wrote {save_captured_inputs(capture_inputs(qmodel, items[0]), out)}")
    return 0


def _cmd_inspect(args, progress: bool) -> int:
    from .bundle import BundleError, load_bundle
    from .bundle.summary import summarize

    try:
        print(summarize(load_bundle(args.bundle)))
    except BundleError as exc:
        print(f"samhw: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_generate(args, progress: bool) -> int:
    from hw.generate import generate_engine, parse_pes

    from .bundle import load_bundle

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
    """One line per case, then the totals; exit 1 when any output word differs from the reference."""
    from sim.cases import select_specs
    from sim.runner import simulate, write_report, write_results_json

    try:
        results = simulate(args.bundle, args.inputs, select_specs(args.layer, args.op, args.pes), args.work)
    except ValueError as exc:
        raise SamhwError(str(exc)) from None
    compared = sum(r.compared for r in results)
    mismatches = sum(r.mismatches for r in results)
    if args.json:
        write_results_json(Path(args.json), results)
    if args.report:
        write_report(Path(args.report), args.bundle, results)
    print(f"compared {compared} words, {mismatches} mismatches")
    return 1 if mismatches else 0


def _cmd_run(args, progress: bool) -> int:
    from .main_job import run_main_job

    run_main_job(args.out, args.model, args.checkpoint, args.recipe, args.bits, _calib_options(args), args.data,
                 args.limit, progress)
    return 0


def _cmd_verify(args, progress: bool) -> int:
    command = args.command_line
    if args.check == "cag-error":
        from .verify.cag_error import verify_cag_error

        path = verify_cag_error(args.states, args.model, args.data, args.images, command, args.out)
        print(f"wrote {path} and {path.with_suffix('.png')}")
        return 0
    spec = _checked_spec(args)
    if args.check == "layers":
        from .verify.layers import verify_layers

        path, below = verify_layers(spec, args.images, command, args.out, progress)
        print(f"wrote {path}")
        return 1 if below else 0
    if args.check == "masks":
        from .verify.masks import verify_masks

        path, _ = verify_masks(spec, args.limit, command, args.workers, args.out, progress)
    else:
        from .verify.threads import verify_threads

        path = verify_threads(spec, command, args.threads, args.limit, args.out, progress)
    print(f"wrote {path}")
    return 0


def _cmd_recipes(args, progress: bool) -> int:
    from .quant.config import default_settings, recipe_settings

    def settings(values: dict) -> str:
        return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())

    print(f"defaults (QuantConfig): {settings(default_settings())}")
    print("each recipe: its observers and every setting that differs from those defaults")
    width = max(map(len, RECIPES))
    for recipe in RECIPES:
        print(f"{recipe:<{width}}  {settings(recipe_settings(recipe))}")
    return 0


COMMANDS = {"quantize": _cmd_quantize, "eval": _cmd_eval, "run": _cmd_run, "export": _cmd_export,
            "inspect": _cmd_inspect, "generate": _cmd_generate, "simulate": _cmd_simulate, "verify": _cmd_verify,
            "recipes": _cmd_recipes}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    # What a report's "Generated by" line quotes: the command as typed, progress bars aside.
    args.command_line = "samhw " + shlex.join(a for a in argv if a != "--no-progress")
    try:
        return COMMANDS[args.command](args, progress=not args.no_progress)
    except SamhwError as exc:
        print(f"samhw: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
