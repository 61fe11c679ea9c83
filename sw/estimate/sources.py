"""Every constant the estimate takes from outside this repository, with its source and how it is used.
No result of the estimate is typed anywhere: these are its inputs, cited in the report as they stand here.

Status: ``sourced`` (a published number, as hardware.md quotes it), ``derived`` (arithmetic on sourced
numbers plus a stated assumption), ``assumed`` (no public source was found; chosen and labelled so, and
varied in the report's sensitivity table).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

SPEC = "../shared/spec/hardware.md"
HOROWITZ = ("M. Horowitz, \"Computing's energy problem (and what we can do about it)\", ISSCC 2014, 45 nm, "
            f"0.9 V ({SPEC} §4.1, §7.3)")
KUON_ROSE = ("I. Kuon, J. Rose, \"Measuring the gap between FPGAs and ASICs\", IEEE TCAD 26(2), 2007: FPGA dynamic "
             f"power about 14x standard cells, hard blocks narrow the gap ({SPEC} §4.2, §7.3)")
SDRAM_PART = (f"{SPEC} §7.3: a similar 256 Mb x16 SDR SDRAM's maximum currents (burst read 210 mA, active standby "
              "45 mA at 3.3 V, 125 MHz); the ULX3S parts' IDD tables were not found")
ULX3S = f"{SPEC} §7.2: ULX3S 32 MB 16-bit SDRAM (MT48LC16M16A2-6A), peak 200 MB/s at 100 MHz"

# Published anchors (numbers as the spec quotes them)
HOROWITZ_PJ = {"int8_add": 0.03, "int32_mult": 3.1, "sram_8kb_64bit": 10.0}
KUON_ROSE_DYNAMIC = 14.0
SDRAM_PJ_PER_BIT = 270.0
SDRAM_STANDBY_A, SDRAM_V = 0.045, 3.3
ULX3S_SDRAM_BYTES_PER_S = 200e6
MULT18 = 18


@dataclass(frozen=True)
class Coefficient:
    name: str
    value: float
    unit: str
    status: str          # sourced | derived | assumed
    source: str
    derivation: str

    def to_json(self) -> dict:
        return asdict(self)


def coefficients() -> dict[str, Coefficient]:
    lut = HOROWITZ_PJ["int8_add"] / 8 * KUON_ROSE_DYNAMIC
    dsp = HOROWITZ_PJ["int32_mult"] * (MULT18 / 32) ** 2
    ebr = HOROWITZ_PJ["sram_8kb_64bit"] / 64
    c = [
        Coefficient("lut_toggle", lut, "pJ per LUT4 output toggle", "derived", f"{HOROWITZ}; {KUON_ROSE}",
                    "8-bit add 0.03 pJ / 8 bits (one LUT-level bit operation each, assumption) x 14 (FPGA vs ASIC "
                    "dynamic power, an assumption when applied to energies)"),
        Coefficient("ff_toggle", lut, "pJ per FF data toggle", "derived", f"{HOROWITZ}; {KUON_ROSE}",
                    "as a LUT4 output toggle (assumption: a register bit's toggle drives a net like a logic bit's)"),
        Coefficient("ff_clock", lut, "pJ per FF per clock cycle", "assumed", f"{HOROWITZ}; {KUON_ROSE}",
                    "every FF's clock input switches each cycle; assumed to cost one data toggle (no ECP5 clock-tree "
                    "figure found)"),
        Coefficient("dsp_op", dsp, "pJ per MULT18X18D operation", "derived", HOROWITZ,
                    "32-bit multiply 3.1 pJ x (18/32)^2 (array multiplier energy ~ partial products, assumption); "
                    "hard block: no FPGA factor (lower bound)"),
        Coefficient("ebr_bit", ebr, "pJ per block RAM bit read or written", "derived", HOROWITZ,
                    "8 KB SRAM 64-bit access 10 pJ / 64 bits (a DP16KD is 2.25 KB, so this is high); hard block: no "
                    "FPGA factor"),
        Coefficient("sdram_bit", SDRAM_PJ_PER_BIT, "pJ per bit moved to or from SDRAM", "sourced", SDRAM_PART,
                    "upper bound of the SDRAM device's energy per bit (burst read current x 3.3 V / bit rate)"),
        Coefficient("io_bit", 0.5 * 8e-12 * 3.3 ** 2 * 0.5 * 1e12, "pJ per bit over the FPGA's SDRAM pins", "assumed",
                    "no ECP5 I/O energy figure found (TN1266 / Power Calculator hold them)",
                    "1/2 C V^2 with C = 8 pF per pin (assumed pin + trace load), V = 3.3 V (LVCMOS33 on the ULX3S), "
                    "1/2 toggle per bit"),
        Coefficient("sdram_static", SDRAM_STANDBY_A * SDRAM_V * 1e3, "mW while running (SDRAM active standby)",
                    "sourced", SDRAM_PART, "45 mA x 3.3 V"),
        Coefficient("fpga_static", 0.0, "mW (LFE5U-85F static)", "assumed",
                    f"not found ({SPEC} §7.3: DS1044's standby current table)",
                    "0 by default (lower bound); the same device runs every FPGA design, so its static energy "
                    "scales with run time: the report's sensitivity table varies it (--fpga-static-mw)"),
        Coefficient("cpu_watts", 15.0, "W while the CPU baseline runs", "assumed",
                    "this machine exposes no power counters (/sys/class/powercap absent)",
                    "an assumed share of a server CPU socket's power for one thread (--cpu-watts)"),
    ]
    return {x.name: x for x in c}


# Published FPGA results that stand beside ours, with their baselines (as hardware.md quotes them)
PUBLISHED = [
    {"work": "AHCPTQ (arXiv 2503.03088 v1-v3, ICCV 2025)", "speedup": 7.89, "energy": 8.64, "energy_metric":
     "energy efficiency", "model": "SAM-L, W4A4", "baseline": "its floating-point counterpart on FPGA (precision, part, "
     "clock and PE array not public)", "source": f"{SPEC} §0, §1.1"},
    {"work": "AHCQ-SAM (arXiv 2503.03088 v4, 2026)", "speedup": 7.12, "energy": 6.62, "energy_metric":
     "power efficiency", "model": "SAM, W4A4 + ACNR + LNQ", "baseline": "an FP32 16-lane design, ZCU102 at 300 MHz",
     "source": f"{SPEC} §0, §1.1"},
]
