"""Now `samhw verify threads` (sw/verify/threads.py): this wrapper only keeps the commands quoted in
docs/thread_agreement_*.md running. Options: `samhw verify threads --help`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sw.cli import main  # noqa: E402

raise SystemExit(main(["verify", "threads", *sys.argv[1:]]))
