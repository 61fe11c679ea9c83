"""The programmable core (docs/core.md): parameters (``config``), instruction set (``isa``), the RTL
units and their top level, the simulation memory, and the cycle model that equals the RTL."""
