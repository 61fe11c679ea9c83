"""cocotb + Verilator co-simulation of the generated hardware against the integer reference
(numpy only; never imports torch). Populated by the co-simulation issue; nothing here yet."""
