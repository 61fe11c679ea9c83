"""The RTLIL of each committed board bitstream's design, as this checkout generates it, with the source
line attributes left out, so that two checkouts can be compared: an RTL change that leaves these files
equal (or that differs only in debug names) leaves the committed bitstreams the build of the current RTL.

    python scripts/board_rtlil.py --out /tmp/rtlil_new       # then: diff -r /tmp/rtlil_old /tmp/rtlil_new

Each bitstreams/<board>-<core>/build.json names its core configuration, PLL clock, memory words and baud
rate; the design is rebuilt from them (``hw.board.ulx3s.board_design``) and written through the same
``prepare`` step the build runs. Prints one digest per design. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bitstreams.ulx3s import TOP, prepare  # noqa: E402
from hw.board.ulx3s import board_design  # noqa: E402
from hw.core.config import CoreConfig  # noqa: E402

SOURCE_ATTRIBUTE = re.compile(r"^\s*attribute \\src .*\n", re.MULTILINE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for <bitstream folder>.il files")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for record_path in sorted((ROOT / "bitstreams").glob("*/build.json")):
        record = json.loads(record_path.read_text())
        d = record["design"]
        design = board_design(CoreConfig.from_dict(d["core"], str(record_path)), d["pll"]["output_hz"] / 1e6,
                              d["mem_words"], d["uart"]["baud"])
        with tempfile.TemporaryDirectory() as tmp:
            prepare(design, Path(tmp))
            text = SOURCE_ATTRIBUTE.sub("", (Path(tmp) / f"{TOP}.il").read_text())
        path = args.out / f"{record_path.parent.name}.il"
        path.write_text(text)
        print(f"{record_path.parent.name}: {hashlib.sha256(text.encode()).hexdigest()[:16]} ({path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
