"""The accelerator on a board you can flash: the ULX3S (LFE5U-85F) top level and its host link.

``protocol`` (the framed link protocol and its CRC, pure Python), ``uart`` (8N1 receiver and
transmitter), ``link`` (the board's end of the protocol), ``extmem`` (block RAM behind the core's AXI4
port), ``system`` (core + memory + link + LEDs, one clock domain: what the co-simulation runs),
``pll`` (EHXPLLL dividers), ``ulx3s`` (the top level on ``amaranth_boards.ulx3s.ULX3S_85F_Platform``),
``host`` (the host driver: numpy, any byte-stream transport, a pyserial one for the real board).
"""

# the modules the board's RTL is generated from (build and simulation cache keys hash these, not the host side)
RTL_SOURCES = ("protocol.py", "uart.py", "link.py", "extmem.py", "system.py", "pll.py", "ulx3s.py")
