// The simulation memory's storage for Verilator (hw/core/simmem.py, verilog_storage=True): one array,
// an AXI read port (registered, with enable), an AXI write port with byte enables, and the backdoor's
// write and read ports. Reads return the word as it was before a same-cycle write, as the Amaranth
// Memory's non-transparent read ports do; the array starts zeroed.
//
// Bulk transfers for a testbench (sim/tb_core_server.py), idle unless it asks: it sets bulk_op (1: load,
// 2: dump) and, for a dump, bulk_first/bulk_last, then increments bulk_seq; at the next rising edge the
// array is read from the file named by the +samhw_load=FILE plusarg ($readmemh: hex words, "@addr"
// lines, so only the words the file lists change) or words bulk_first..bulk_last are written to the
// +samhw_dump=FILE file ($writememh), and bulk_done takes bulk_seq's value. A whole image loads in C++
// instead of one VPI call per word. Without the plusargs, or while bulk_seq == bulk_done, nothing happens.
module samhw_sim_storage #(
    parameter WORDS = 2,
    parameter WIDTH = 256,
    parameter ABITS = 1
) (
    input  wire               clk,
    input  wire [ABITS-1:0]   raddr,
    input  wire               ren,
    output reg  [WIDTH-1:0]   rdata,
    input  wire [ABITS-1:0]   waddr,
    input  wire [WIDTH-1:0]   wdata,
    input  wire [WIDTH/8-1:0] wen,
    input  wire [ABITS-1:0]   bd_waddr,
    input  wire [WIDTH-1:0]   bd_wdata,
    input  wire               bd_wen,
    input  wire [ABITS-1:0]   bd_raddr,
    output reg  [WIDTH-1:0]   bd_rdata
);
    reg [WIDTH-1:0] mem [0:WORDS-1];
    integer i;
    reg [31:0] bulk_seq /*verilator public_flat_rw*/;
    reg [31:0] bulk_done /*verilator public_flat_rw*/;
    reg [31:0] bulk_op /*verilator public_flat_rw*/;
    reg [31:0] bulk_first /*verilator public_flat_rw*/;
    reg [31:0] bulk_last /*verilator public_flat_rw*/;
    reg [8*1024-1:0] load_file, dump_file;
    initial begin
        rdata = {WIDTH{1'b0}};
        bd_rdata = {WIDTH{1'b0}};
        for (i = 0; i < WORDS; i = i + 1) mem[i] = {WIDTH{1'b0}};
        bulk_seq = 32'd0;
        bulk_done = 32'd0;
        bulk_op = 32'd0;
        bulk_first = 32'd0;
        bulk_last = 32'd0;
        load_file = {(8*1024){1'b0}};
        dump_file = {(8*1024){1'b0}};
        if ($value$plusargs("samhw_load=%s", load_file) == 0) load_file = {(8*1024){1'b0}};
        if ($value$plusargs("samhw_dump=%s", dump_file) == 0) dump_file = {(8*1024){1'b0}};
    end
    always @(posedge clk) begin
        if (ren) rdata <= mem[raddr];
        bd_rdata <= mem[bd_raddr];
        for (i = 0; i < WIDTH / 8; i = i + 1)
            if (wen[i]) mem[waddr][8 * i +: 8] <= wdata[8 * i +: 8];
        if (bd_wen) mem[bd_waddr] <= bd_wdata;
        if (bulk_seq != bulk_done) begin
            if (bulk_op == 32'd1) $readmemh(load_file, mem);
            if (bulk_op == 32'd2) $writememh(dump_file, mem, bulk_first, bulk_last);
            bulk_done <= bulk_seq;
        end
    end
endmodule
