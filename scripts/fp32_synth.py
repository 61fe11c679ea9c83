"""Synthesizes the FP32 multiply-add lane (and lane arrays) for ECP5-85F and writes docs/fp32_lane.md:
this wrapper runs `python -m bitstreams.fp32_lane` with the same options (see its --help)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bitstreams.fp32_lane import main  # noqa: E402

raise SystemExit(main(sys.argv[1:]))
