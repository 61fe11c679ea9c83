"""AXI4 slave memory for simulation, with the timing the cycle model assumes (docs/core.md):

- every address request is accepted at once (``arready``/``awready`` stay high while the request
  queues have room; they are sized so the core never fills them);
- a read burst whose request is accepted in cycle a presents its first beat in cycle
  max(a + mem_read_latency, the cycle after the previous burst's last beat), then one beat per cycle;
- write beats are accepted at once (from the cycle the burst's address is known); a burst whose last
  beat is accepted in cycle x is answered (``bvalid``) in cycle x + mem_write_latency.

Storage is one Amaranth ``Memory`` (``self.storage``) of ``words`` words of ``bus_bits``. A testbench
reaches it without bus transactions: in Amaranth's simulator ``ctx.get/set(simmem.storage.data[i])``,
and the ``bd_*`` backdoor port reads or writes one word per cycle while the core is idle. ``init``
fills it at elaboration.

With ``verilog_storage=True`` (the Verilator co-simulation) the storage is instead an instance of
``sim_storage.v``, a plain Verilog array with the same ports and the same read and write behaviour
(registered reads that return the old word on a same-cycle write, byte-enabled writes): Amaranth
writes a Memory's contents into the Verilog one word per line, which for the tens of megabytes a
whole layer needs takes gigabytes and many minutes to generate, while the Verilog array is declared
in one line. cocotb reaches it as ``dut.simmem.storage.mem[i]`` (a public Verilator variable).
"""

from __future__ import annotations

from pathlib import Path

from amaranth.hdl import Cat, ClockSignal, Instance, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .axi import axi4_signature
from .config import CoreConfig
from .params import CoreParams

COUNTER_BITS = 32
STORAGE_VERILOG = Path(__file__).with_name("sim_storage.v")
STORAGE_MODULE = "samhw_sim_storage"


class SimMemory(wiring.Component):
    def __init__(self, config: CoreConfig, words: int, init=None, verilog_storage: bool = False):
        self.params = CoreParams(config)
        self.config, self.words = config, words
        self.word_bits = max(words - 1, 1).bit_length()
        if verilog_storage and init is not None:
            raise ValueError("the Verilog storage starts zeroed; write its contents through the testbench")
        self.verilog_storage = verilog_storage
        self.storage = None if verilog_storage else Memory(shape=config.bus_bits, depth=words,
                                                           init=list(init) if init is not None else [])
        super().__init__({
            "axi": In(axi4_signature(self.params.ext_byte_addr_bits, config.bus_bits)),
            "bd_addr": In(self.word_bits), "bd_wdata": In(config.bus_bits), "bd_we": In(1),
            "bd_rdata": Out(config.bus_bits),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, axi = self.config, self.axi
        byte_bits = (cfg.bus_bits // 8).bit_length() - 1
        ports = self._storage(m)
        now = Signal(COUNTER_BITS)
        m.d.sync += now.eq(now + 1)

        def due(value, at):  # ``at`` has reached ``value``, modulo the counter
            return (value - at)[:COUNTER_BITS].as_signed() <= 0

        # ---- reads ------------------------------------------------------------------------------
        read_entry = data.StructLayout({"addr": self.word_bits, "len": 8, "due": COUNTER_BITS})
        m.submodules.read_queue = rq = SyncFIFO(width=read_entry.size, depth=self.params.read_outstanding + 2)
        m.d.comb += [axi.arready.eq(rq.w_rdy), rq.w_en.eq(axi.arvalid),
                     rq.w_data.eq(Cat((axi.araddr >> byte_bits)[:self.word_bits], axi.arlen,
                                      now + cfg.mem_read_latency))]
        head = data.View(read_entry, rq.r_data)
        rport = ports["read"]
        r_active, r_addr, r_left = Signal(), Signal(self.word_bits), Signal(8)
        rvalid, rlast = Signal(), Signal()
        advance = ~rvalid | axi.rready
        # the burst's first beat is presented in the next cycle, so it starts when due there
        start = ~r_active & rq.r_rdy & due(head.due, now + 1)
        beat_addr = Mux(r_active, r_addr, head.addr)
        beat_left = Mux(r_active, r_left, head.len)
        m.d.comb += [rport.addr.eq(beat_addr), rport.en.eq(advance),
                     axi.rvalid.eq(rvalid), axi.rlast.eq(rlast), axi.rdata.eq(rport.data),
                     axi.rresp.eq(0), axi.rid.eq(0)]
        with m.If(advance):
            m.d.sync += [rvalid.eq(r_active | start), rlast.eq(beat_left == 0)]
            with m.If(r_active | start):
                m.d.sync += [r_addr.eq(beat_addr + 1), r_left.eq(beat_left - 1), r_active.eq(beat_left != 0)]
                m.d.comb += rq.r_en.eq(start)

        # ---- writes -----------------------------------------------------------------------------
        aw_entry = data.StructLayout({"addr": self.word_bits, "len": 8})
        m.submodules.aw_queue = awq = SyncFIFO(width=aw_entry.size, depth=4)
        m.submodules.b_queue = bq = SyncFIFO(width=COUNTER_BITS, depth=cfg.mem_write_latency + 2)
        aw_addr = (axi.awaddr >> byte_bits)[:self.word_bits]
        w_active, w_addr = Signal(), Signal(self.word_bits)
        burst_known = awq.r_rdy | axi.awvalid
        burst_addr = Mux(awq.r_rdy, data.View(aw_entry, awq.r_data).addr, aw_addr)
        beat = axi.wvalid & axi.wready
        first_beat = beat & ~w_active
        bypass = first_beat & ~awq.r_rdy   # the burst's address arrives with its first beat
        m.d.comb += [axi.awready.eq(awq.w_rdy),
                     awq.w_en.eq(axi.awvalid & ~bypass), awq.w_data.eq(Cat(aw_addr, axi.awlen)),
                     awq.r_en.eq(first_beat & awq.r_rdy),
                     axi.wready.eq((w_active | burst_known) & bq.w_rdy)]
        wport = ports["write"]
        addr = Mux(w_active, w_addr, burst_addr)
        m.d.comb += [wport.addr.eq(addr), wport.data.eq(axi.wdata), wport.en.eq(Mux(beat, axi.wstrb, 0))]
        with m.If(beat):
            m.d.sync += [w_addr.eq(addr + 1), w_active.eq(~axi.wlast)]
        m.d.comb += [bq.w_en.eq(beat & axi.wlast), bq.w_data.eq(now + cfg.mem_write_latency),
                     axi.bvalid.eq(bq.r_rdy & due(bq.r_data, now)), axi.bresp.eq(0), axi.bid.eq(0),
                     bq.r_en.eq(axi.bvalid & axi.bready)]

        # ---- backdoor ---------------------------------------------------------------------------
        bd_w, bd_r = ports["bd_write"], ports["bd_read"]
        m.d.comb += [bd_w.addr.eq(self.bd_addr), bd_w.data.eq(self.bd_wdata), bd_w.en.eq(self.bd_we),
                     bd_r.addr.eq(self.bd_addr), self.bd_rdata.eq(bd_r.data)]
        return m

    def _storage(self, m) -> dict:
        """The four storage ports: AXI read (with enable), AXI write (byte enables), backdoor write and
        backdoor read (always enabled); each an object with ``addr``, ``data``, ``en``."""
        if not self.verilog_storage:
            m.submodules.storage = mem = self.storage
            return {"read": mem.read_port(), "write": mem.write_port(granularity=8),
                    "bd_write": mem.write_port(), "bd_read": mem.read_port()}
        bits, abits = self.config.bus_bits, self.word_bits

        class Port:
            def __init__(self, name, en_bits):
                self.addr = Signal(abits, name=f"{name}_addr")
                self.data = Signal(bits, name=f"{name}_data")
                self.en = Signal(en_bits, name=f"{name}_en", init=1 if name == "bd_read" else 0)

        ports = {"read": Port("read", 1), "write": Port("write", bits // 8), "bd_write": Port("bd_write", 1),
                 "bd_read": Port("bd_read", 1)}
        m.submodules.storage = Instance(
            STORAGE_MODULE, p_WORDS=self.words, p_WIDTH=bits, p_ABITS=abits, i_clk=ClockSignal(),
            i_raddr=ports["read"].addr, i_ren=ports["read"].en, o_rdata=ports["read"].data,
            i_waddr=ports["write"].addr, i_wdata=ports["write"].data, i_wen=ports["write"].en,
            i_bd_waddr=ports["bd_write"].addr, i_bd_wdata=ports["bd_write"].data, i_bd_wen=ports["bd_write"].en,
            i_bd_raddr=ports["bd_read"].addr, o_bd_rdata=ports["bd_read"].data)
        return ports
