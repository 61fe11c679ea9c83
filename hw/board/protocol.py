"""The host link's framed protocol: byte layout, commands, status codes and the CRC, shared by the
board's RTL (``hw/board/link.py``) and the host driver (``hw/board/host.py``). Pure Python.

Every request gets exactly one answer. Request (host -> board)::

    0      SOF_REQUEST (0xA5)
    1      command
    2..5   address, little-endian (register word address, or external-memory word address)
    6..7   count, little-endian (registers or memory words)
    8..    payload: count x 4 bytes (WRITE_REGS), count x bus_bytes (WRITE_MEM), none otherwise
    last 2 CRC-16/CCITT-FALSE of bytes 1 .. end of payload, high byte first

Answer (board -> host)::

    0      SOF_ANSWER (0x5A)
    1      the request's command
    2      status (OK or an error below)
    3..4   count of payload units, little-endian (0 in every error answer)
    5..    payload: count x 4 bytes (READ_REGS, STATUS), count x bus_bytes (READ_MEM), none otherwise
    last 2 CRC-16 of bytes 1 .. end of payload, high byte first

The CRC is sent high byte first, so the CRC of a whole frame after its first byte is 0: that is how
the RTL checks it. A request whose CRC is wrong, that stops for longer than the board's byte timeout
(``timeout_cycles``), that names an unknown command, an address range outside the external memory, a
payload larger than the staging buffer, or a memory access or START while the core runs is answered
with that error and has no effect: payloads are staged in a buffer and written only once the CRC has
checked. Bytes between frames that are not SOF_REQUEST are skipped.
"""

from __future__ import annotations

import struct

SOF_REQUEST = 0xA5
SOF_ANSWER = 0x5A
REQUEST_HEADER = 8     # SOF, command, address (4), count (2)
ANSWER_HEADER = 5      # SOF, command, status, count (2)
CRC_BYTES = 2
VERSION = 1

# commands
READ_REGS, WRITE_REGS, WRITE_MEM, READ_MEM, START, STATUS = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
COMMANDS = {READ_REGS: "READ_REGS", WRITE_REGS: "WRITE_REGS", WRITE_MEM: "WRITE_MEM", READ_MEM: "READ_MEM",
            START: "START", STATUS: "STATUS"}

# answer status
OK, ERR_CRC, ERR_TIMEOUT, ERR_COMMAND, ERR_BUSY, ERR_RANGE = 0, 1, 2, 3, 4, 5
STATUS_NAMES = {OK: "ok", ERR_CRC: "bad checksum", ERR_TIMEOUT: "truncated frame (byte timeout)",
                ERR_COMMAND: "unknown command", ERR_BUSY: "core busy", ERR_RANGE: "address or length out of range"}

# STATUS answer: STATUS_WORDS 32-bit words
STATUS_WORDS = 6
# word 0: flags
FLAG_BUSY, FLAG_DONE = 1 << 0, 1 << 1          # the core's run state
FLAG_AXI_RANGE = 1 << 8     # the core addressed external memory beyond its end (sticky, cleared by STATUS)
FLAG_RX_FRAMING = 1 << 9    # a byte with a bad stop bit arrived (sticky, cleared by STATUS)
FLAG_RX_OVERRUN = 1 << 10   # the receive FIFO overflowed (sticky, cleared by STATUS)
FLAG_LINK_ERROR = 1 << 11   # an error answer was sent (sticky, cleared by STATUS)
# word 1: error answers sent since reset; word 2: external memory words; word 3: core clock in kHz;
# word 4: VERSION << 24 | log2(stage bytes) << 16 | clocks per UART bit; word 5: the byte timeout in cycles


def crc16_update(crc: int, byte: int) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, MSB first, no final XOR), one byte."""
    crc ^= (byte & 0xFF) << 8
    for _ in range(8):
        crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
    return crc & 0xFFFF


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    for b in data:
        crc = crc16_update(crc, b)
    return crc


CRC_INIT = 0xFFFF


def crc16_masks() -> list[tuple[int, int]]:
    """The CRC byte update as XOR masks: output bit i = parity(crc & masks[i][0]) ^ parity(byte & masks[i][1])
    (the update is linear over GF(2)); what the RTL builds its XOR trees from."""
    # symbolic run: each bit is a 24-bit mask, bits 0..15 the old CRC, bits 16..23 the byte
    crc = [1 << i for i in range(16)]
    data = [1 << (16 + i) for i in range(8)]
    for i in range(8):
        crc[8 + i] ^= data[i]
    for _ in range(8):
        top = crc[15]
        crc = [0] + crc[:15]
        for bit in (0, 5, 12):   # 0x1021
            crc[bit] ^= top
    return [(m & 0xFFFF, m >> 16) for m in crc]


def payload_unit(command: int, bus_bytes: int, answer: bool) -> int:
    """Bytes per count unit of a request's (``answer=False``) or an answer's payload."""
    if answer:
        return {READ_REGS: 4, STATUS: 4, READ_MEM: bus_bytes}.get(command, 0)
    return {WRITE_REGS: 4, WRITE_MEM: bus_bytes}.get(command, 0)


def request(command: int, address: int = 0, count: int = 0, payload: bytes = b"") -> bytes:
    body = struct.pack("<BIH", command, address & 0xFFFF_FFFF, count & 0xFFFF) + bytes(payload)
    return bytes([SOF_REQUEST]) + body + crc16(body).to_bytes(2, "big")


def answer(command: int, status: int, count: int = 0, payload: bytes = b"") -> bytes:
    """An answer frame as the board sends it (tests and the host-side model)."""
    body = struct.pack("<BBH", command, status, count) + bytes(payload)
    return bytes([SOF_ANSWER]) + body + crc16(body).to_bytes(2, "big")
