"""docs/results.json <-> docs/results.md and docs/results.png.

The JSON holds one object per measured run; the Markdown table and the plot are always regenerated
from it, so no number is ever typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic_file import write_atomic
from .comparison import render_comparison
from .runs import code_state, group_runs, mean_std, percent_spread, retuned_commits, seed_list, split_by_code

ROOT = Path(__file__).resolve().parents[2]
RESULTS_JSON = ROOT / "docs" / "results.json"
# A run measured again at the same code replaces the earlier one; runs of other code stay, as history.
KEY_FIELDS = ("model", "recipe", "weight_bits", "act_bits", "dataset", "seed", "code_commit")
RECIPE_ORDER = ["fp", "minmax", "percentile", "omse", "ptq4sam-s", "adaround", "brecq", "qdrop", "qdrop+big",
                "qdrop+agq", "ptq4sam-l", "ahcptq-hluq", "ahcptq-cag", "ahcptq-cag-raw", "ahcptq-g1", "ahcptq-g2",
                "ahcptq", "ahcptq-raw", "ahcptq-g8", "saqsam-star", "saqsam", "saqsam+hluq+cag"]
# Sub-tables that change one component per row: (title, [(recipe, label), ...]).
ABLATIONS = [
    ("Ablation: BIG and AGQ on top of QDrop",
     [("qdrop", "QDrop"), ("qdrop+big", "+BIG"), ("qdrop+agq", "+AGQ"), ("ptq4sam-l", "+both (PTQ4SAM-L)")]),
    ("Ablation: HLUQ and CAG on top of PTQ4SAM-L",
     [("ptq4sam-l", "PTQ4SAM-L"), ("ahcptq-hluq", "+HLUQ"), ("ahcptq-cag", "+CAG (G=4)"),
      ("ahcptq-cag-raw", "+CAG (G=4, raw features)"), ("ahcptq", "+both (AHCPTQ, G=4)"),
      ("ahcptq-raw", "+both (G=4, raw features)")]),
    ("Ablation: CAG group count G and clustering features (AHCPTQ)",
     [("ahcptq-g1", "G=1"), ("ahcptq-g2", "G=2"), ("ahcptq", "G=4 (AHCPTQ)"), ("ahcptq-g8", "G=8"),
      ("ahcptq-raw", "G=4, raw (s, z) features as in the reference")]),
    ("SAQ-SAM vs PTQ4SAM-L vs AHCPTQ",
     [("ptq4sam-s", "PTQ4SAM-S (statistics)"), ("saqsam-star", "SAQ-SAM* (PCC, statistics)"),
      ("ptq4sam-l", "PTQ4SAM-L (QDrop)"), ("ahcptq", "AHCPTQ (QDrop + HLUQ + CAG)"),
      ("saqsam", "SAQ-SAM (PCC + PAR)")]),
]


def _key(record: dict) -> tuple:
    # Rows from before calibration seeds were recorded all calibrated on seed 0.
    return tuple(record.get(k, 0) for k in KEY_FIELDS)


def _sort_key(record: dict) -> tuple:
    recipe = record["recipe"]
    rank = RECIPE_ORDER.index(recipe) if recipe in RECIPE_ORDER else len(RECIPE_ORDER)
    return (record["model"], record["dataset"], -record["weight_bits"], rank, recipe, record.get("seed", 0))


def merge_records(path: Path, new: list[dict]) -> list[dict]:
    old = json.loads(path.read_text()) if path.is_file() else []
    merged = {_key(r): r for r in old}
    merged.update({_key(r): r for r in new})
    return sorted(merged.values(), key=_sort_key)


def _seconds(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _bits(r: dict) -> str:
    return "fp32" if r["recipe"] == "fp" else f"W{r['weight_bits']}A{r['act_bits']}"


def _seeds(runs: list[dict]) -> str:
    return "n/a" if runs[0]["recipe"] == "fp" else seed_list(runs)


def _run_table(groups: list[list[dict]]) -> list[str]:
    lines = ["| model | dataset | recipe | bits | seeds | AP | mIoU GT | mIoU FP | calib s | calib CPU s | threads | commit |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for runs in groups:
        r = runs[0]
        calib, _ = mean_std(runs, "calib_seconds")
        cpu, _ = mean_std(runs, "calib_cpu_seconds")
        threads = sorted({str(x.get("torch_threads") or "n/a") for x in runs})
        commits = sorted({x.get("code_commit") or "n/a" for x in runs})
        lines.append(f"| {r['model']} | {r['dataset']} | {r['recipe']} | {_bits(r)} | {_seeds(runs)} | "
                     f"{percent_spread(runs, 'ap')} | {percent_spread(runs, 'miou_gt')} | {percent_spread(runs, 'miou_fp')} | "
                     f"{_seconds(calib)} | {_seconds(cpu)} | {', '.join(threads)} | {', '.join(commits)} |")
    return lines


_DEFINITIONS = [
    "Box-prompted instance segmentation with ground-truth boxes. AP = COCO mask AP (pycocotools),",
    "mIoU GT = mean IoU against the ground-truth masks over all non-crowd instances, mIoU FP = mean IoU",
    "of the quantized model's masks against the float model's. All in percent. Calibration: 32 train",
    "images, at most 16 ground-truth boxes each. seeds: the calibration seeds of the runs in the row",
    "(seed 0 = the first 32 train images in file-name order, any other seed = a random draw of 32, its",
    "prompt subsets and reconstruction batches; sw/data/calibration.py); with more than one seed a cell",
    "is mean ± sample standard deviation over the runs and calib s their mean. Seconds are wall clock,",
    "reconstruction included; calib CPU s is the CPU time of the run's own threads. Rows are reproducible",
    "only at their own torch thread count and code (commit): either can change the order of float32 sums,",
    "and one flipped activation code cascades through the following blocks.",
]


def render_markdown(records: list[dict]) -> str:
    current, older = split_by_code(records)
    state = code_state(records)
    lines = ["# Results", "",
             "Generated by `scripts/results_table.py` from `docs/results.json`; do not edit by hand.", *_DEFINITIONS, ""]
    if state is None:
        lines += ["No float row yet: no code state to tabulate.", ""]
    else:
        retuned = retuned_commits(current, state)
        lines += [f"Every row below was measured at one code state, commit `{state}` (the float row's)"
                  + (f", rows at {', '.join(f'`{c}`' for c in retuned)} with their recipe's settings changed on top of "
                     f"it and nothing else that moves numbers (`git diff` touches only `sw/quant/config.py`; "
                     f"sw/report/code_states.py)" if retuned else "")
                  + f". Rows of older code or older settings ({len(older)} runs) are listed apart in "
                  f"[results_history.md](results_history.md), not compared with these; the method "
                  f"comparison reading the spread is [method_comparison.md](method_comparison.md).", ""]
        lines += _run_table(group_runs(current))
        lines += ["", "![mIoU vs ground truth by recipe and bit width (bars: mean, whiskers: std over seeds)](results.png)", ""]
        for title, variants in ABLATIONS:
            lines += _ablation(current, title, variants)
    return "\n".join(lines)


def render_history(records: list[dict]) -> str:
    _, older = split_by_code(records)
    lines = ["# Results of older code", "",
             "Generated by `scripts/results_table.py` from `docs/results.json`; do not edit by hand.",
             f"Runs measured at code other than the current table's ({code_state(records)}, see "
             "[results.md](results.md)), or with settings of their recipe other than today's: kept for the record, each with its own commit (n/a: before commits "
             "were recorded). They are not comparable with the current rows or, across commits, with each "
             "other at the level of one or two points.", "", *_DEFINITIONS, ""]
    lines += _run_table(group_runs(older))
    lines.append("")
    for title, variants in ABLATIONS:
        lines += _ablation(older, title, variants)
    return "\n".join(lines)


def _ablation(records: list[dict], title: str, variants: list[tuple[str, str]]) -> list[str]:
    """One component changed per row, per dataset and bit width measured."""
    recipes = dict(variants)
    groups = [g for g in group_runs(records) if g[0]["recipe"] in recipes]
    if not groups:
        return []
    lines = [f"## {title}", "",
             "| dataset | bits | variant | seeds | AP | mIoU GT | mIoU FP | calib s |", "|---|---|---|---|---|---|---|---|"]
    for runs in sorted(groups, key=lambda g: (g[0]["dataset"], -g[0]["weight_bits"], list(recipes).index(g[0]["recipe"]))):
        r = runs[0]
        lines.append(f"| {r['dataset']} | {_bits(r)} | {recipes[r['recipe']]} | {_seeds(runs)} | "
                     f"{percent_spread(runs, 'ap')} | {percent_spread(runs, 'miou_gt')} | {percent_spread(runs, 'miou_fp')} | "
                     f"{_seconds(mean_std(runs, 'calib_seconds')[0])} |")
    return lines + [""]


def render_plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    current, _ = split_by_code(records)
    fp = [r for r in current if r["recipe"] == "fp"]
    groups = [g for g in group_runs(current) if g[0]["recipe"] != "fp"]
    recipes = sorted({g[0]["recipe"] for g in groups}, key=lambda s: (RECIPE_ORDER + [s]).index(s))
    bits = sorted({g[0]["weight_bits"] for g in groups}, reverse=True)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(recipes) * max(1, len(bits)) / 2), 3.6))
    ax.set_xlim(-0.6, len(recipes) - 0.2)
    width = 0.8 / max(1, len(bits))
    for j, b in enumerate(bits):
        stats = [next((mean_std(g, "miou_gt") for g in groups if g[0]["recipe"] == rec and g[0]["weight_bits"] == b),
                      (None, None)) for rec in recipes]
        ax.bar([i + j * width for i in range(len(recipes))], [100 * (m or 0) for m, _ in stats], width,
               yerr=[100 * (s or 0) for _, s in stats], capsize=3, label=f"W{b}A{b}")
    for r in fp:
        ax.axhline(100 * r["miou_gt"], color="k", ls="--", lw=1, label=f"float ({r['dataset']})")
    ax.set_xticks([i + width * (len(bits) - 1) / 2 for i in range(len(recipes))], recipes, rotation=30, ha="right")
    ax.set_ylabel("mIoU vs GT (%)")
    # headroom above the float line for the legend, so it never covers a bar
    top = max([100 * r["miou_gt"] for r in fp] + [100 * (mean_std(g, "miou_gt")[0] or 0) for g in groups] + [1])
    ax.set_ylim(0, 1.3 * top)
    ax.legend(fontsize=8, loc="upper center", ncol=len(bits) + len(fp), framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def write_results(records: list[dict], path: Path) -> None:
    write_atomic(path, json.dumps(records, indent=1) + "\n")
    write_atomic(path.with_suffix(".md"), render_markdown(records))
    write_atomic(path.with_name(path.stem + "_history.md"), render_history(records))
    write_atomic(path.with_name("method_comparison.md"), render_comparison(records))
    render_plot(records, path.with_suffix(".png"))
