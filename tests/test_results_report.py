"""The generated results table says which thread count each row ran with (rows move with it)."""

from sw.report.results import render_markdown


def _record(recipe: str, **extra) -> dict:
    return {"model": "litemedsam", "dataset": "coco_tiny/val", "recipe": recipe, "weight_bits": 8, "act_bits": 8,
            "ap": 0.25, "miou_gt": 0.5, "miou_fp": 0.75, "calib_seconds": 10.0, **extra}


def test_rows_show_their_thread_count_or_na():
    text = render_markdown([_record("minmax", calib_cpu_seconds=9.5, torch_threads=1),
                            _record("percentile")])
    rows = [line for line in text.splitlines() if line.startswith("| litemedsam")]
    assert rows[0].split("|")[-2].strip() == "1"
    assert rows[1].split("|")[-2].strip() == "n/a"
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    assert header.split("|")[-2].strip() == "threads"
