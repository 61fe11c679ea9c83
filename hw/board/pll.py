"""ECP5 EHXPLLL settings computed here, not by hand: the dividers for a wanted output frequency from the
board's oscillator, searched the way prjtrellis' ``ecppll`` searches them (input divider 1..128 with the
phase detector at 3.125..400 MHz, feedback divider 1..80, output divider 1..128 with the VCO at
400..800 MHz; feedback from CLKOP, so f_out = f_in x CLKFB_DIV / CLKI_DIV and f_vco = f_out x CLKOP_DIV),
the closest output first, then the VCO nearest 600 MHz. Exact arithmetic (fractions), so the achieved
frequency is stated exactly.

FT231X baud rates (the ULX3S's USB-UART): 3 MHz / n for n = 1 and n >= 2 in steps of 1/8, plus 2 MHz;
``uart_baud`` picks the fastest of the common ones that divides the clock evenly.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

PFD_MIN, PFD_MAX = 3_125_000, 400_000_000
VCO_MIN, VCO_MAX = 400_000_000, 800_000_000
OUT_MIN, OUT_MAX = 10_000_000, 400_000_000
BAUDS = (3_000_000, 2_000_000, 1_500_000, 1_000_000, 500_000, 250_000, 115_200)


@dataclass(frozen=True)
class PllSetting:
    input_hz: int
    clki_div: int
    clkfb_div: int
    clkop_div: int

    @property
    def output(self) -> Fraction:
        return Fraction(self.input_hz * self.clkfb_div, self.clki_div)

    @property
    def output_hz(self) -> int:
        """The achieved output frequency (refused by ``pll_setting`` unless a whole number of Hz)."""
        return int(self.output)

    @property
    def vco(self) -> Fraction:
        return self.output * self.clkop_div

    @property
    def pfd(self) -> Fraction:
        return Fraction(self.input_hz, self.clki_div)

    @property
    def cphase(self) -> int:
        """CLKOP_CPHASE as ecppll writes it: half a CLKOP period in VCO cycles (phase is irrelevant here,
        the core clock is the only clock of the design)."""
        return (self.clkop_div - 1) // 2

    def describe(self) -> str:
        return (f"EHXPLLL: {self.input_hz / 1e6:g} MHz / CLKI_DIV {self.clki_div} x CLKFB_DIV {self.clkfb_div} = "
                f"{float(self.output) / 1e6:g} MHz (VCO {float(self.vco) / 1e6:g} MHz, CLKOP_DIV {self.clkop_div})")


def pll_setting(input_hz: int, wanted_hz: float) -> PllSetting:
    """The EHXPLLL dividers whose output is closest to ``wanted_hz``."""
    if not OUT_MIN <= wanted_hz <= OUT_MAX:
        raise ValueError(f"an EHXPLLL output is {OUT_MIN / 1e6:g}..{OUT_MAX / 1e6:g} MHz, asked for {wanted_hz / 1e6:g} MHz")
    wanted = Fraction(wanted_hz)
    best, best_key = None, None
    for clki in range(1, 129):
        pfd = Fraction(input_hz, clki)
        if not PFD_MIN <= pfd <= PFD_MAX:
            continue
        for clkfb in range(1, 81):
            out = pfd * clkfb
            if not OUT_MIN <= out <= OUT_MAX:
                continue
            for clkop in range(1, 129):
                vco = out * clkop
                if vco < VCO_MIN:
                    continue
                if vco > VCO_MAX:
                    break
                key = (abs(out - wanted), abs(vco - 600_000_000))
                if best_key is None or key < best_key:
                    best, best_key = PllSetting(input_hz, clki, clkfb, clkop), key
    if best is None:
        raise ValueError(f"no EHXPLLL setting reaches {wanted_hz / 1e6:g} MHz from {input_hz / 1e6:g} MHz")
    return best


def uart_baud(clock_hz: int, bauds=BAUDS) -> int:
    """The fastest FT231X baud rate that divides ``clock_hz`` evenly."""
    for baud in bauds:
        if clock_hz % baud == 0:
            return baud
    raise ValueError(f"no baud rate of {bauds} divides {clock_hz} Hz evenly")


def ehxplll(setting: PllSetting, clkin, clkop, locked):
    """The EHXPLLL instance (CLKOP fed back to CLKFB), as ecppll writes it."""
    from amaranth.hdl import Instance

    return Instance(
        "EHXPLLL",
        a_FREQUENCY_PIN_CLKI=str(setting.input_hz // 1_000_000),
        a_FREQUENCY_PIN_CLKOP=f"{float(setting.output) / 1e6:g}",
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED",
        p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB", p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
        p_CLKI_DIV=setting.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=setting.clkop_div,
        p_CLKOP_CPHASE=setting.cphase, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=setting.clkfb_div,
        i_RST=0, i_STDBY=0, i_CLKI=clkin, o_CLKOP=clkop, i_CLKFB=clkop, i_PHASESEL0=0, i_PHASESEL1=0,
        i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
