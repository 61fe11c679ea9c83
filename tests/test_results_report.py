"""The generated results table says which thread count and which commit each row ran with (rows move
with either)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sw.report.comparison import reads, render_comparison
from sw.report.results import render_history, render_markdown

ROOT = Path(__file__).resolve().parents[1]


def _record(recipe: str, **extra) -> dict:
    return {"model": "litemedsam", "dataset": "coco_tiny/val", "recipe": recipe, "weight_bits": 8, "act_bits": 8,
            "ap": 0.25, "miou_gt": 0.5, "miou_fp": 0.75, "calib_seconds": 10.0, **extra}


def _column(text: str, name: str) -> list[str]:
    lines = text.splitlines()
    header = [c.strip() for c in next(line for line in lines if line.startswith("| model")).split("|")]
    index = header.index(name)
    return [line.split("|")[index].strip() for line in lines if line.startswith("| litemedsam")]


def test_rows_show_their_thread_count_and_commit_or_na():
    text = render_markdown([_record("fp", code_commit="abc1234"),
                            _record("minmax", calib_cpu_seconds=9.5, torch_threads=1, code_commit="abc1234"),
                            _record("percentile", code_commit="abc1234")])
    assert _column(text, "threads") == ["n/a", "1", "n/a"]
    assert _column(text, "commit") == ["abc1234", "abc1234", "abc1234"]


def test_seeds_of_one_row_give_mean_and_std_and_older_code_goes_to_the_history():
    runs = [_record("saqsam", seed=s, miou_gt=v, code_commit="new") for s, v in [(0, 0.40), (1, 0.42), (2, 0.44)]]
    old = _record("ahcptq", code_commit="old", miou_gt=0.99)
    records = [_record("fp", code_commit="new"), *runs, old]
    text = render_markdown(records)
    assert _column(text, "mIoU GT") == ["50.0", "42.0 ± 2.0"]
    assert _column(text, "seeds") == ["n/a", "0, 1, 2"]
    assert "99.0" not in text
    assert "99.0" in render_history(records) and "42.0" not in render_history(records)


def test_comparison_reads_only_differences_larger_than_the_seed_spread():
    def rows(recipe, values):
        return [_record(recipe, weight_bits=4, act_bits=4, seed=s, miou_gt=v, code_commit="c")
                for s, v in enumerate(values)]

    a, b, c = rows("saqsam", [0.45, 0.46, 0.47]), rows("ahcptq", [0.40, 0.41, 0.42]), rows("ptq4sam-l", [0.395, 0.41, 0.425])
    assert reads(a, b, "miou_gt")[2] and not reads(b, c, "miou_gt")[2]
    assert reads(a, b, "miou_gt")[1] == pytest.approx(0.02)
    single = rows("qdrop", [0.10])
    assert not reads(a, single, "miou_gt")[2]  # a single run has no spread to read against
    text = render_comparison([_record("fp", code_commit="c"), *a, *b, *c])
    assert "saqsam − ahcptq | +5.0 vs 2.0: **reads**" in text
    assert "Code state `c`; float LiteMedSAM mIoU GT 50.0, AP 25.0." in text
    assert "ahcptq − ptq4sam-l | +0.0 vs 2.5: within spread" in text


def test_results_script_records_the_checkout_commit():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from results_table import code_commit
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert re.fullmatch(re.escape(head) + r"(\+dirty)?", code_commit())


def _w4(recipe: str, commit: str, miou: float, seed: int = 0) -> dict:
    return _record(recipe, weight_bits=4, act_bits=4, seed=seed, miou_gt=miou, code_commit=commit)


def test_runs_measured_again_at_other_code_are_kept_beside_the_earlier_ones(tmp_path):
    from sw.report.results import merge_records

    path = tmp_path / "results.json"
    path.write_text(json.dumps([_w4("saqsam", "base", 0.46)]))
    merged = merge_records(path, [_w4("saqsam", "later", 0.47), _w4("saqsam", "base", 0.45)])
    assert sorted((r["code_commit"], r["miou_gt"]) for r in merged) == [("base", 0.45), ("later", 0.47)]


def _commit(repo: Path, message: str) -> str:
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], cwd=repo, check=True)
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_a_commit_that_changes_only_one_recipes_settings_measures_as_the_table(tmp_path):
    from sw.report.code_states import measures_as_table
    from sw.report.runs import split_by_code

    repo = tmp_path / "repo"
    config = repo / "sw" / "quant" / "config.py"
    config.parent.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    text = (ROOT / "sw" / "quant" / "config.py").read_text()
    config.write_text(text)
    (repo / "sw" / "model.py").write_text("x = 1\n")
    state = _commit(repo, "table")
    old = '"saqsam": {**_SAQSAM_STAR, "recon": "par", "recon_iters": 50'
    assert old in text
    config.write_text(text.replace(old, old.replace("50", "60")))
    retuned = _commit(repo, "saqsam retuned")
    (repo / "sw" / "model.py").write_text("x = 2\n")
    other_code = _commit(repo, "model changed")
    (repo / "sw" / "model.py").write_text("x = 1\n")
    _commit(repo, "model back")  # the working tree: the table's code with saqsam's new settings

    assert measures_as_table(state, retuned, "saqsam", "w4a4", repo) is True
    assert measures_as_table(state, retuned, "ptq4sam-l", "w4a4", repo) is True
    assert measures_as_table(state, state, "ptq4sam-l", "w4a4", repo) is True
    assert measures_as_table(state, state, "saqsam", "w4a4", repo) is False  # older settings of saqsam
    assert measures_as_table(state, other_code, "ptq4sam-l", "w4a4", repo) is False
    assert measures_as_table(state, "0000000", "saqsam", "w4a4", repo) is None

    def measures(s, commit, recipe, bits):
        return measures_as_table(s, commit, recipe, bits, repo)

    records = [_record("fp", code_commit=state), _w4("saqsam", state, 0.45), _w4("saqsam", retuned, 0.47),
               _w4("ptq4sam-l", state, 0.40), _w4("ptq4sam-l", other_code, 0.41), _w4("ahcptq", "unknown", 0.4)]
    current, older = split_by_code(records, measures)
    assert [(r["recipe"], r["code_commit"]) for r in current] == [
        ("fp", state), ("saqsam", retuned), ("ptq4sam-l", state)]
    assert len(older) == 3
