"""Measure the results table: float and quantized LiteMedSAM on a COCO-format val split.

Every cell comes from a run made by this script. Records are merged into docs/results.json by
(model, recipe, bits, dataset), so later recipes append rows without re-running earlier ones; the
Markdown table and the plot are regenerated from the JSON each time.

    python scripts/results_table.py                      # FP + {minmax, percentile, omse} x {w8a8, w6a6, w4a4}
    python scripts/results_table.py --recipes omse --bits w4a4 --limit 5   # a quick partial run
    python scripts/results_table.py --recipes saqsam --bits w4a4 --seeds 0 1 2   # three calibration draws

Several processes can share one list of runs: each gives the same --claim folder and its own --out,
takes the next run nobody has claimed, and --merge joins their JSON files into docs/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sw.data.coco import DEFAULT_COCO_ROOT  # noqa: E402
from sw.report.results import RESULTS_JSON, merge_records, write_results  # noqa: E402


def code_commit() -> str | None:
    """The commit the measured code came from, "+dirty" when sw/ or scripts/ differ from it: a row is
    reproducible only at the code that produced it (float32 rounding differences cascade)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sw", "scripts"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None  # not a git checkout: the column says n/a
    return head + ("+dirty" if dirty else "")


def claim(path: Path) -> bool:
    """True for the one process that creates ``path`` first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="litemedsam")
    p.add_argument("--data", default=str(DEFAULT_COCO_ROOT),
                   help="COCO root: calibration on its train split, evaluation on its val split")
    p.add_argument("--recipes", nargs="+", default=["minmax", "percentile", "omse"])
    p.add_argument("--bits", nargs="+", default=["w8a8", "w6a6", "w4a4"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0],
                   help="calibration seeds, one run each: 0 = the first train images in file-name order, any "
                        "other = a random draw of them (sw/data/calibration.py), also the prompt and batch draws")
    p.add_argument("--threads", type=int, help="torch threads (recorded with each row)")
    p.add_argument("--claim", help="folder of claimed runs shared by several processes (see the module docstring)")
    p.add_argument("--merge", nargs="+", help="only merge these results JSON files into --out and regenerate")
    p.add_argument("--calib-images", type=int, default=32)
    p.add_argument("--max-prompts", type=int, default=16)
    p.add_argument("--limit", type=int, help="evaluate only the first N val images (records say so)")
    p.add_argument("--no-fp", action="store_true", help="skip the float row (its masks are still computed)")
    p.add_argument("--float-cache", help="npz of the float model's masks: loaded when it exists, else written "
                                         "after computing them (saves the float pass on later runs)")
    p.add_argument("--out", default=str(RESULTS_JSON))
    p.add_argument("--states", help="also save each calibrated model's state here (<recipe>_<bits>.safetensors), "
                                    "for 'samhw verify' and 'samhw export --quant-state'")
    args = p.parse_args(argv)
    if args.merge:
        extra = [r for path in args.merge for r in json.loads(Path(path).read_text())]
        write_results(merge_records(Path(args.out), extra), Path(args.out))
        return 0

    from sw.data.coco import resolve_coco_folder
    from sw.data.sources import calibration_items
    from sw.eval.benchmark import collect_predictions, evaluate_model, run_benchmark
    from sw.eval.prediction_cache import cached_predictions, val_source, val_split_name
    from sw.models import load_model
    from sw.quant.calibrate import quantize
    from sw.quant.config import make_config
    from sw.quant.state import calibration_metadata, save_quant_state
    from sw.seeding import seed_everything
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(0)
    split = resolve_coco_folder(args.data, "val")
    dataset = val_split_name(args.data, args.limit)
    model = load_model(args.model)
    base = {"model": model.name, "dataset": dataset, "code_commit": code_commit()}
    records = []

    def save() -> None:
        # After every run, so an interrupted table keeps what was measured.
        write_results(merge_records(Path(args.out), records), Path(args.out))

    start = time.perf_counter()
    float_masks = cached_predictions(   # the float row, when wanted, times a real pass
        Path(args.float_cache) if args.float_cache else None, val_source(model.name, args.data, args.limit),
        lambda: collect_predictions(split, model.predict, limit_images=args.limit, desc="float"), reuse=args.no_fp)
    fp_seconds = time.perf_counter() - start
    if not args.no_fp:
        fp = run_benchmark(split, float_masks, limit_images=args.limit, progress=False)
        records.append({**base, "recipe": "fp", "weight_bits": 32, "act_bits": 32, "ap": fp.ap,
                        "miou_gt": fp.miou_gt, "miou_fp": 1.0, "calib_seconds": 0.0,
                        "eval_seconds": round(fp_seconds, 1)})
        save()

    # Explicitly --data's train split: the CLI's default calibration source (the bundled photographs)
    # is not what the table measures.
    for recipe, bits, seed in [(r, b, s) for r in args.recipes for b in args.bits for s in args.seeds]:
        if args.claim and not claim(Path(args.claim) / f"{recipe}_{bits}_seed{seed}"):
            continue
        seed_everything(seed)
        items, described = calibration_items(args.data, args.calib_images, args.max_prompts, seed)
        print(f"{recipe} {bits} seed {seed}: calibration on {len(items)} images from {described}", file=sys.stderr)
        cpu_start = time.process_time()
        qmodel, calib_seconds = quantize(model, make_config(recipe, bits), items, seed=seed)
        # CPU seconds of all this process's threads: unlike wall clock, barely moved by other jobs
        # sharing the machine, so rows measured on a busy machine stay comparable.
        calib_cpu = time.process_time() - cpu_start
        if args.states:
            save_quant_state(qmodel, Path(args.states) / f"{recipe}_{bits}_seed{seed}.safetensors",
                             extra=calibration_metadata(calib_seconds, len(items)))
        start = time.perf_counter()
        result = evaluate_model(split, qmodel, reference_masks=float_masks, limit_images=args.limit)
        cfg = qmodel.quant_config
        records.append({**base, "recipe": recipe, "weight_bits": cfg.weight_bits, "act_bits": cfg.act_bits,
                        "seed": seed, "ap": result.ap, "miou_gt": result.miou_gt, "miou_fp": result.miou_fp,
                        "calib_seconds": round(calib_seconds, 1), "calib_cpu_seconds": round(calib_cpu, 1),
                        "torch_threads": torch.get_num_threads(),
                        "eval_seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(records[-1]), file=sys.stderr)
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
