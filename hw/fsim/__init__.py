"""Functional model of the programmable core (docs/core.md), numpy only.

    memory_after = hw.fsim.run(config, streams, memory)     # FsimError (one line) on a bad program

``run`` executes the LOAD / COMPUTE / STORE streams word for word as the RTL does, tile results and
all, without timing; see its docstring for the exact contract. ``layout`` holds the buffer and memory
formats both this model and the compiler use: ``pack_codes``/``unpack_codes`` (ACT codes and WGT
vectors), ``pack_out_rows``/``unpack_out_rows`` (OUT row vectors), ``pack_descriptor``/
``decode_descriptor``, ``pack_entries``/``decode_slot`` (PARAM descriptors, segments, constant slots) and
``pack_bias_tables``/``unpack_bias_table`` (a grid-bias core's tables in PARAM).

Where docs/core.md leaves a choice open, this model takes the following, and the RTL is expected to
match (every one is tested in tests/test_fsim.py):

- segments and constant slots are 128-bit entries, bus_bits / 128 per PARAM word (``desc_words``);
- an OUT row vector narrower than its words (cols * e < bus_bits) is written with zeros above it;
- two row vectors of one GEMM on one OUT word, or two rows of one transfer on one word: the later in
  the pseudo-code's loop order wins;
- STORE reads OUT whatever its ``buffer`` field says; LOAD into OUT is an error;
- raw output needs n_seg = 1 and ignores bias and requantization; it keeps the low e bits of X;
- a requantization shift of 0 adds no rounding term (2^-1 is taken as 0);
- X and Y after a segment must fit ``pe_acc_bits`` and the lanes' sum 48 bits (two's complement
  adders make wrap-around invisible whenever the final value fits, so only the final value counts);
  beyond that is an error, not a wrap: the compiler proves it never happens;
- a descriptor is checked against the core: mode in ``formats`` (MAC with several segments needs
  "cag"), n_seg <= max_segments, HLUQ log_levels - 1 and AGQ max_shift <= max_shift, segments inside
  n_c * n_i * n_d, elements of 4, 8, 16 or 32 bits, tau 1, 2 or 4;
- n_batch = 0 or n_rb = 0 computes nothing; a segment with j_len = 0 adds nothing;
- a wait flag the unit does not have (LOAD wait_prev, STORE wait_next, LOAD signal_prev, STORE
  signal_next) is an error; a token counter is a FIFO between one producer and one consumer unit;
- with ``check_hazards`` (default) reading a buffer word nothing has written is an error, because the
  RTL's buffers are not initialised.
"""

from .gemm import GemmError, decode_row, exact_matmul, requantize
from .layout import (Descriptor, decode_descriptor, decode_slot, decode_slots, pack_codes, pack_descriptor,
                     pack_entries, pack_out_rows, unpack_codes, unpack_out_rows)
from .machine import FsimError, Machine, run

__all__ = ["Descriptor", "FsimError", "GemmError", "Machine", "decode_descriptor", "decode_row", "decode_slot",
           "decode_slots", "exact_matmul", "pack_codes", "pack_descriptor", "pack_entries", "pack_out_rows", "requantize", "run",
           "unpack_codes", "unpack_out_rows"]
