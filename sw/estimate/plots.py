"""The report's figures (matplotlib, Agg): per-layer cycle breakdown, roofline, speed-up and energy bars."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .activity import class_of
from .summary import BASELINES

MODELS = {"litemedsam": "LiteMedSAM", "sam_vit_b": "SAM ViT-B (shapes)"}
ORDER = ("subject", "int8", "fp32_small", "fp32", "fp32_roomy")


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cycles_plot(result: dict, path: Path) -> None:
    plt = _plt()
    models = [m for m in MODELS if m in result["models"]]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    kinds = sorted({f"{r['part']} {class_of(r['kind'])}" for m in models
                    for rows in result["models"][m]["rows"].values() for r in rows})
    colors = dict(zip(kinds, plt.cm.tab20.colors))
    for ax, model in zip(axes[0], models):
        rows = result["models"][model]["rows"]
        keys = [k for k in ORDER if k in rows]
        bottoms = [0.0] * len(keys)
        for kind in kinds:
            vals = []
            for key in keys:
                vals.append(sum(r["cycles"] * r["count"] for r in rows[key]
                                if f"{r['part']} {class_of(r['kind'])}" == kind) / 1e6)
            ax.bar(range(len(keys)), vals, bottom=bottoms, color=colors[kind], label=kind)
            bottoms = [b + v for b, v in zip(bottoms, vals)]
        ax.set_xticks(range(len(keys)), [result["designs"][k]["label"] for k in keys], rotation=15, fontsize=8)
        ax.set_ylabel("Mcycles per image + one box (cycle model)")
        ax.set_title(MODELS[model])
    axes[0][-1].legend(fontsize=7, loc="upper left")
    _save(plt, fig, path)


def roofline_plot(result: dict, path: Path) -> None:
    plt = _plt()
    models = [m for m in MODELS if m in result["models"]]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    bw = result["board"]["memory_bytes_per_s"]
    for ax, model in zip(axes[0], models):
        for key, marker in (("subject", "o"), ("fp32", "s")):
            rows = result["models"][model]["rows"].get(key)
            if not rows:
                continue
            d = result["designs"][key]
            peak = d["config"]["rows"] * d["config"]["cols"] * d["clock_mhz"] * 1e6
            by_bound = defaultdict(lambda: ([], []))
            for r in rows:
                if not r["bytes"] or not r["seconds"]:
                    continue
                xs, ys = by_bound[r["bound"]]
                xs.append(r["macs"] / r["bytes"])
                ys.append(r["macs"] / r["seconds"] / 1e9)
            for bound, (xs, ys) in by_bound.items():
                ax.scatter(xs, ys, marker=marker, s=14, label=f"{d['label']}: {bound}-bound", alpha=0.7)
            xs = [10 ** (e / 8) for e in range(-16, 33)]
            core_bw = d["config"]["bus_bits"] / 8 * d["clock_mhz"] * 1e6
            ax.plot(xs, [min(peak, core_bw * x) / 1e9 for x in xs], linestyle="--", linewidth=1,
                    label=f"{d['label']}: peak and own bus")
        if bw:
            ax.plot([1e-2, 1e4], [bw * x / 1e9 for x in (1e-2, 1e4)], color="k", linewidth=1,
                    label=f"{result['board']['name']} memory")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(1e-2, 1e3)
        ax.set_xlabel("MACs per external byte")
        ax.set_ylabel("GMAC/s (per invocation, on the board)")
        ax.set_title(MODELS[model])
        ax.legend(fontsize=6)
    _save(plt, fig, path)


def ratio_plot(result: dict, path: Path) -> None:
    plt = _plt()
    models = [m for m in MODELS if m in result["models"]]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models):
        ratios = result["models"][model]["ratios"]
        names, speed, energy = [], [], []
        for key in BASELINES:
            if key in ratios:
                names.append(result["designs"][key]["label"])
                speed.append(ratios[key]["image_box"]["speedup"])
                energy.append(ratios[key]["image_box"]["energy_ratio"])
        if "cpu" in ratios:
            c = ratios["cpu"]
            scope = "end to end" if "speedup" in c else "core only, no host steps"
            names.append(f"CPU ({c['threads']} thread{'s' * (c['threads'] > 1)}), {scope}")
            speed.append(c.get("speedup", c["speedup_accelerator_only"]))
            energy.append(c.get("energy_ratio", c["energy_ratio_accelerator_only"]))
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], speed, width=0.4, label="speed-up")
        ax.bar([i + 0.2 for i in x], energy, width=0.4, label="energy ratio")
        ax.axhline(10, color="k", linestyle="--", linewidth=1, label="moonshot 10x")
        ax.axhline(1, color="grey", linewidth=0.5)
        ax.set_yscale("log")
        ax.set_xticks(list(x), names, rotation=15, fontsize=8)
        ax.set_title(f"{MODELS[model]}: {result['designs']['subject']['label']} vs")
        ax.legend(fontsize=7)
    _save(plt, fig, path)


def ceiling_plot(result: dict, path: Path) -> None:
    """Per layer class, the subject's time split into its MAC ceiling's share, PEs idle and memory wait."""
    plt = _plt()
    models = [m for m in MODELS if "above_ceiling" in result["models"].get(m, {}).get("moonshot", {})]
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(6 * max(len(models), 1), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models):
        above = result["models"][model]["moonshot"]["above_ceiling"]
        classes = above["classes"][::-1]         # the most time above the ceiling on top
        names = [f"{c['part']} {c['class']}" for c in classes]
        left = [0.0] * len(classes)
        for key, label, color in (("ideal_s", "at the MAC ceiling", "tab:green"),
                                  ("pe_idle_s", "PEs idle", "tab:orange"),
                                  ("memory_wait_s", "waiting on memory", "tab:red")):
            vals = [max(c[key], 0.0) for c in classes]
            ax.barh(range(len(classes)), vals, left=left, color=color, label=label)
            left = [a + v for a, v in zip(left, vals)]
        ax.set_yticks(range(len(classes)), names, fontsize=8)
        ax.set_xlabel("seconds per image + one box")
        ax.set_title(f"{MODELS[model]}: {above['pes']} PEs at {above['clock_mhz']:g} MHz")
        ax.legend(fontsize=7, loc="lower right")
    _save(plt, fig, path)


def clock_plot(result: dict, path: Path) -> None:
    """Per model, the moonshot's speed-up and energy ratio against the core's clock, the target, the clock
    the report takes and the post-route Fmax of the largest core built for the board."""
    plt = _plt()
    models = [m for m in MODELS if "clock_sweep" in result["models"].get(m, {}).get("moonshot", {})]
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(6 * max(len(models), 1), 4.0), squeeze=False)
    for ax, model in zip(axes[0], models):
        sweep = result["models"][model]["moonshot"]["clock_sweep"]
        mhz = [p["mhz"] for p in sweep["points"]]
        ax.plot(mhz, [p["speedup"] for p in sweep["points"]], color="tab:blue", label="speed-up")
        ax.plot(mhz, [p["energy_ratio"] for p in sweep["points"]], color="tab:green", label="energy ratio")
        if "speedup_held" in sweep["points"][0]:
            ax.plot(mhz, [p["speedup_held"] for p in sweep["points"]], color="tab:blue", ls=":",
                    label="speed-up, FP32 clocks held to the core's")
            ax.plot(mhz, [p["energy_ratio_held"] for p in sweep["points"]], color="tab:green", ls=":",
                    label="energy ratio, FP32 clocks held to the core's")
        ax.axhline(sweep["target"], color="black", lw=0.8, ls="--", label=f"moonshot {sweep['target']:g}x")
        for a, b in sweep["bands"]:
            ax.axvspan(a, b, color="tab:green", alpha=0.12)
        ax.axvline(sweep["clock_mhz"], color="tab:gray", lw=0.8, label=f"report's clock {sweep['clock_mhz']:g} MHz")
        if sweep["built"] is not None:
            ax.axvline(sweep["built"]["fmax_mhz"], color="tab:red", lw=0.8,
                       label=f"largest build's Fmax {sweep['built']['fmax_mhz']:g} MHz")
        ax.set_xlabel("core clock (MHz); FP32 designs at their own clocks")
        ax.set_ylabel("lower of the bracket's ends (x)")
        ax.set_title(MODELS[model])
        ax.legend(fontsize=7)
    _save(plt, fig, path)


def write_plots(result: dict, out: Path, stem: str = "estimate") -> list[Path]:
    paths = [out / f"{stem}_cycles.png", out / f"{stem}_roofline.png", out / f"{stem}_ratios.png",
             out / f"{stem}_ceiling.png", out / f"{stem}_clock.png"]
    cycles_plot(result, paths[0])
    roofline_plot(result, paths[1])
    ratio_plot(result, paths[2])
    ceiling_plot(result, paths[3])
    clock_plot(result, paths[4])
    return paths
