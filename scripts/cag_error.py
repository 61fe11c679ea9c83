"""Now `samhw verify cag-error` (sw/verify/cag_error.py): this wrapper only keeps the commands quoted in
docs/cag_error_w4a4.md running. Options: `samhw verify cag-error --help`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sw.cli import main  # noqa: E402

raise SystemExit(main(["verify", "cag-error", *sys.argv[1:]]))
