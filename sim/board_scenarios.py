"""Host scenarios that ``sim.tb_board`` runs against the simulated board (``sim.board_runner``): ordinary
blocking host code on a ``hw.board.host.Transport``, as against the real board's serial port.

``run_layers``: the host driver (``BoardLink``, ``BoardRunner``) runs jobs of core runs with the
contract of ``sim.core_runner`` (memory images as .npy, streams as hex words, regions to read back),
saves each job's words (.npy) and returns cycles, instruction counts and the link's traffic.

``malformed``: frames a broken host or line produces (bad CRC, truncated frame, unknown command,
memory ranges beyond the end, payloads larger than the staging buffer, a memory write while the core
runs, garbage between frames), each sent raw with the board's answer recorded; then checks that a bad
write changed nothing and that the board still answers normally.
"""

from __future__ import annotations

import struct

import numpy as np

from hw.board import protocol as P
from hw.board.host import BoardLink, BoardRunner, LinkError
from hw.core import regs
from hw.core.config import CoreConfig
from hw.core.streams import Streams


def _streams(data: dict) -> Streams:
    return Streams(*(tuple(int(w, 16) for w in data[u]) for u in ("load", "compute", "store")))


def run_layers(transport, args: dict) -> dict:
    from sim.core_runner import CoreRun

    config = CoreConfig.from_dict(args["config"])
    link = BoardLink(transport, config.bus_bytes)
    runner = BoardRunner(link, config, assume_zeroed=True)
    jobs = []
    for job in args["jobs"]:
        runs = [CoreRun(_streams(r["streams"]), np.load(r["memory"]) if r["memory"] else None,
                        read=[tuple(x) for x in r["read"]], timeout_cycles=r["timeout_cycles"]) for r in job["runs"]]
        start, frames, sent, received = transport.now(), link.frames, link.bytes_sent, link.bytes_received
        words = runner.memory.words_sent
        results = runner.run_batch(runs)
        for i, result in enumerate(results):
            np.save(job["result"].format(i=i), result.words)
        jobs.append({"cycles": [r.cycles for r in results], "counts": [r.counts for r in results],
                     "sim_s": transport.now() - start, "frames": link.frames - frames,
                     "bytes_sent": link.bytes_sent - sent, "bytes_received": link.bytes_received - received,
                     "words_sent": runner.memory.words_sent - words})
    status = link.status()
    return {"jobs": jobs, "retried": link.retried, "error_answers": status.error_answers, "flags": status.flags}


def _raw(link: BoardLink, transport, frame: bytes, wait_s: float) -> bytes:
    """Sends ``frame`` as it is; returns every byte that comes back until the line is quiet for ``wait_s``."""
    transport.write(frame)
    got = transport.read(4096, wait_s + len(frame) * 10 / transport.baud)   # the frame's own line time first
    while True:
        more = transport.read(4096, wait_s)
        if not more:
            return got
        got += more


def _parse(answer: bytes) -> dict:
    ok = len(answer) >= P.ANSWER_HEADER + P.CRC_BYTES and answer[0] == P.SOF_ANSWER and P.crc16(answer[1:]) == 0
    out = {"bytes": len(answer), "hex": answer[:16].hex(), "crc_ok": ok}
    if len(answer) >= P.ANSWER_HEADER:
        out["command"], out["status"], out["count"] = struct.unpack("<BBH", answer[1:5])
    return out


def malformed(transport, args: dict) -> dict:
    config = CoreConfig.from_dict(args["config"])
    link = BoardLink(transport, config.bus_bytes, retries=0)
    board = link.status()
    bus = config.bus_bytes
    wait = 4 * board.timeout_s + 200 * 10 / transport.baud
    pattern = np.arange(bus * 2, dtype=np.uint8).reshape(2, bus)
    link.write_words(0, pattern)

    good_write = P.request(P.WRITE_MEM, 0, 1, bytes([0xEE] * bus))
    bad_crc = bytearray(good_write)
    bad_crc[20] ^= 0x10                              # one flipped payload bit
    bad_trailer = bytearray(P.request(P.READ_REGS, regs.INFO, 1))
    bad_trailer[-1] ^= 0xFF
    cases = {
        "bad checksum (payload bit flipped)": bytes(bad_crc),
        "bad checksum (CRC byte)": bytes(bad_trailer),
        "truncated header": P.request(P.READ_REGS, regs.INFO, 1)[:5],
        "truncated payload": good_write[:P.REQUEST_HEADER + bus // 2],
        "unknown command": P.request(0x42, 0, 0),
        "memory range beyond the end": P.request(P.READ_MEM, board.mem_words - 1, 2),
        "payload larger than the staging buffer": P.request(P.WRITE_MEM, 0, board.stage_bytes // bus + 1,
                                                            bytes(board.stage_bytes + bus)),
        "garbage, then a good frame": bytes([0x00, 0xFF, 0x5A, 0x13]) + P.request(P.READ_REGS, regs.INFO, 1),
    }
    answers = {name: _parse(_raw(link, transport, frame, wait)) for name, frame in cases.items()}

    # a memory write and a START while the core runs: a program that runs long enough (one LOAD of
    # 20000 rows of 4 words, all from the same 4 words, into the same 4 ACT words)
    from hw.core.isa import Buffer, Opcode, Transfer
    load = Transfer(opcode=Opcode.LOAD, wait_prev=0, wait_next=0, signal_prev=0, signal_next=0, buffer=Buffer.ACT,
                    buf_addr=0, ext_addr=0, rows=20000, row_words=4, ext_stride=0, buf_stride=0)
    streams = Streams.assemble([load], [], [])
    link.program(streams)
    link.start()
    answers["memory write while the core runs"] = _parse(_raw(link, transport, good_write, wait))
    answers["START while the core runs"] = _parse(_raw(link, transport, P.request(P.START), wait))
    link.wait_done(1.0)

    after = link.read_words(0, 2)
    info = link.read_regs(regs.INFO, 3)
    status = link.status()
    try:
        link.transact(P.READ_MEM, board.mem_words, 1)
        raised = None
    except LinkError as exc:
        raised = exc.status
    return {"answers": answers, "memory_unchanged": bool((after == pattern).all()),
            "info": info, "error_answers": status.error_answers, "flags": status.flags,
            "driver_raises_status": raised, "stage_bytes": board.stage_bytes, "mem_words": board.mem_words}


def run_backend(transport, args: dict) -> dict:
    """``hw.board.backend.BoardBackend`` (the runtime's interface): one invocation of a bundle layer,
    opened once and run twice on the same inputs; saves the outputs of both runs (.npz) and returns the
    words each step sent (the second run sends no input word again, only the output words the first run
    left, to restore the fresh memory the backend contract promises)."""
    from hw.board.backend import BoardBackend
    from hw.compiler import compile_layer
    from sw.bundle import load_bundle

    config = CoreConfig.from_dict(args["config"])
    layer = load_bundle(args["bundle"]).layers[args["layer"]]
    with np.load(args["inputs"]) as data:
        inputs = {k: data[k] for k in data.files}
    program = compile_layer(config, layer, args["op"], {k: v.shape for k, v in inputs.items()})
    inv = program.invocations[0]
    backend = BoardBackend(BoardLink(transport, config.bus_bytes), config, assume_zeroed=True)
    sent = []
    backend.open(program)
    sent.append(backend.runner.memory.words_sent)
    outcomes = []
    for _ in range(2):
        outcomes.append(backend.run(inv, inputs))
        sent.append(backend.runner.memory.words_sent - sum(sent))
    for i, outcome in enumerate(outcomes):
        np.savez(args["outputs"].format(i=i), **outcome.outputs)
    return {"words_sent": sent, "cycles": [o.cycles for o in outcomes], "program_words": program.total_words,
            "static_words": program.static_words, "output_words": sum(r.words for r in inv.outputs.values())}
