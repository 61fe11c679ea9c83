"""Compiler for the programmable core (docs/core.md): bundle layer invocations -> instruction streams,
a static external-memory image and tensor regions (numpy only).

    program = compile_layer(config, layer, op, {"input": shape})       # one invocation
    outputs = program.run(program.invocations[0].key, {"input": codes}) # through hw.fsim

``build_program`` compiles many invocations into one program; ``hw.compiler.model`` records the
invocations of a whole bundle and ``hw.compiler.store`` writes and reads program directories.
"""

from .errors import CompileError
from .invocation import Invocation, InvocationSpec, plan_invocation
from .program import Program, build_program, compile_layer
from .regions import Region, RegionError

__all__ = ["CompileError", "Invocation", "InvocationSpec", "Program", "Region", "RegionError", "build_program",
           "compile_layer", "plan_invocation"]
