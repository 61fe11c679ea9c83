"""Now `samhw verify masks` (sw/verify/masks.py): this wrapper only keeps the commands quoted in
docs/ref_masks_*.md running. Options: `samhw verify masks --help`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sw.cli import main  # noqa: E402

raise SystemExit(main(["verify", "masks", *sys.argv[1:]]))
