"""Measured runs of docs/results.json grouped for tables: which code state a table stands for, the
runs of one row (one recipe and bit width under several calibration seeds), their mean and spread."""

from __future__ import annotations

from .code_states import measures_as_table


def code_state(records: list[dict]) -> str | None:
    """The code the table stands for: the commit of the float row, which every table run measures again."""
    fp = [r for r in records if r["recipe"] == "fp"]
    return fp[-1].get("code_commit") if fp else None


def retuned_commits(current: list[dict], state: str) -> list[str]:
    """The commits of current rows other than the table's own: its code with a recipe's settings changed."""
    return sorted({r["code_commit"] for r in current} - {state})


def split_by_code(records: list[dict], measures=measures_as_table) -> tuple[list[dict], list[dict]]:
    """(rows measured at the table's code state, older rows). Rows of older code are not comparable
    at the level of one or two points (one flipped activation code cascades), so they never share a
    table with the current ones. A row is current when ``measures`` (code_states.measures_as_table)
    says its commit measures as the table's with today's settings of its recipe; where git cannot
    tell (a commit it does not have), only rows at the table's own commit are."""
    state = code_state(records)
    if state is None:
        return [], list(records)

    def is_current(r: dict) -> bool:
        commit = r.get("code_commit")
        if r["recipe"] == "fp":
            return commit == state
        verdict = measures(state, commit, r["recipe"], f"w{r['weight_bits']}a{r['act_bits']}")
        return commit == state if verdict is None else verdict

    current = [r for r in records if is_current(r)]
    return current, [r for r in records if r not in current]


def group_runs(records: list[dict]) -> list[list[dict]]:
    """Runs of one (model, dataset, recipe, bits) under different calibration seeds, in table order."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["dataset"], r["recipe"], r["weight_bits"], r["act_bits"]), []).append(r)
    return list(groups.values())


def mean_std(runs: list[dict], field: str) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1) over the runs; std None for a single run."""
    values = [r[field] for r in runs if r.get(field) is not None]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def percent_spread(runs: list[dict], field: str) -> str:
    """The runs' mean in percent, with ± their std when there are several."""
    mean, std = mean_std(runs, field)
    if mean is None:
        return "n/a"
    return percent(mean) if std is None else f"{100 * mean:.1f} ± {100 * std:.1f}"


def seed_list(runs: list[dict]) -> str:
    # Rows from before calibration seeds were recorded all calibrated on seed 0.
    return ", ".join(str(r.get("seed", 0)) for r in runs)
