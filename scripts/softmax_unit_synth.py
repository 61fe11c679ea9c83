"""Synthesizes the softmax unit for ECP5-85F and writes docs/softmax_unit_synthesis.md and .json:
this wrapper runs `python -m bitstreams.softmax_unit` with the same options (see its --help)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bitstreams.softmax_unit import main  # noqa: E402

raise SystemExit(main(sys.argv[1:]))
