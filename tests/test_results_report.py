"""The generated results table says which thread count and which commit each row ran with (rows move
with either)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sw.report.results import render_markdown

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
    text = render_markdown([_record("minmax", calib_cpu_seconds=9.5, torch_threads=1, code_commit="abc1234"),
                            _record("percentile")])
    assert _column(text, "threads") == ["1", "n/a"]
    assert _column(text, "commit") == ["abc1234", "n/a"]


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
