"""Which runs count as the results table's code state, from git.

A run's numbers depend on the code under ``sw/`` and ``scripts/results_table.py`` and on its own
recipe's settings (``sw/quant/config.py``). The table stands for one commit, the float row's; a run
belongs in it when its commit's code is that commit's apart from config.py and its recipe's settings
there are the ones in the working tree now. So a recipe whose settings changed is measured again on
top of the table's commit (a commit that changes config.py alone) without rerunning every other row,
and its runs with the older settings leave the table for the history.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NUMBER_PATHS = ("sw", "scripts/results_table.py")
CONFIG_PATH = "sw/quant/config.py"


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


@lru_cache(maxsize=None)
def changed_number_paths(state: str, commit: str, root: Path = ROOT) -> tuple[str, ...] | None:
    """Files that can move a number and differ between the two commits (None: git cannot tell)."""
    done = _git(root, "diff", "--name-only", state, commit, "--", *NUMBER_PATHS)
    return tuple(done.stdout.split()) if done.returncode == 0 else None


@lru_cache(maxsize=None)
def settings_at(commit: str | None, root: Path = ROOT) -> dict | None:
    """(recipe, bits) -> the resolved QuantConfig fields of ``config.py`` as of ``commit`` (None: the
    working tree's; None returned when git has no such commit)."""
    if commit is None:
        text, name = (root / CONFIG_PATH).read_text(), "worktree"
    else:
        done = _git(root, "show", f"{commit}:{CONFIG_PATH}")
        if done.returncode != 0:
            return None
        text, name = done.stdout, "".join(c if c.isalnum() else "_" for c in commit)
    # config.py's one relative import is sw.errors; a package of its own per snapshot keeps every
    # snapshot, and the live module, apart.
    from .. import errors

    package = f"_quant_config_at_{name}"
    for sub in (package, f"{package}.quant"):
        sys.modules.setdefault(sub, types.ModuleType(sub)).__path__ = []
    sys.modules[f"{package}.errors"] = errors
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(f"{package}.quant.config", loader=None))
    sys.modules[module.__name__] = module
    exec(compile(text, f"{name}:{CONFIG_PATH}", "exec"), module.__dict__)
    return {(recipe, bits): module.make_config(recipe, bits).to_dict()
            for recipe in module.RECIPES for bits in module.BIT_CONFIGS}


def measures_as_table(state: str, commit: str | None, recipe: str, bits: str, root: Path = ROOT) -> bool | None:
    """Whether a run of (recipe, bits) at ``commit`` is what the table's code, ``state``, measures with
    the recipe's settings as they are now: the code that moves numbers is the state's apart from
    config.py, and the run's settings are today's. None when git cannot tell (an unknown commit)."""
    if commit is None:
        return None
    changed = changed_number_paths(state, commit, root)
    if changed is None:
        return None
    if set(changed) - {CONFIG_PATH}:
        return False
    then, now = settings_at(commit, root), settings_at(None, root)
    if then is None or now is None:
        return None
    return (recipe, bits) in then and then[(recipe, bits)] == now.get((recipe, bits))
