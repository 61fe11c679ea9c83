"""The compiler's one-line refusal: a layer the core cannot run, named with the limit it exceeds."""

from __future__ import annotations

from sw.errors import SamhwError


class CompileError(SamhwError):
    """A layer invocation (or program) that does not fit the target core, in one line."""
