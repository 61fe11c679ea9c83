"""Now `samhw verify layers` (sw/verify/layers.py): this wrapper only keeps the commands quoted in
docs/crosscheck_*.md running. Options: `samhw verify layers --help`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sw.cli import main  # noqa: E402

raise SystemExit(main(["verify", "layers", *sys.argv[1:]]))
