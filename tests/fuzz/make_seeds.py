#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/alloc and .../trace).

The files are committed; run this again only when the input format of fuzz_alloc.c or the trace
format changes: python3 tests/fuzz/make_seeds.py (from the repository root).

fuzz_alloc input: 1 selector byte (bit 0 host, bits 1-2 granularity, bit 3 small capacity),
13 configuration bytes (>= 128 picks a value, below 128 leaves the field unset), then
operations: an opcode byte (its value mod 16) and its arguments, as parsed in fuzz_alloc.c.
Each seed exercises one feature (growth, stitching and reuse, GC, held streams, limits, bad
frees, faults, ...) so that the fuzzer starts from inputs that already reach deep states.
"""
import gzip
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
ALLOC = os.path.join(HERE, "corpus", "alloc")
TRACE = os.path.join(HERE, "corpus", "trace")
DATA = os.path.join(HERE, "..", "..", "data", "traces")

UNSET = 0


def cfg(small_chunk=UNSET, lmin=UNSET, lmax=UNSET, small_req=UNSET, stitch=UNSET,
        stitch_min=UNSET, reuse=UNSET, when=UNSET, gc_bytes=UNSET, gc_count=UNSET,
        limit=UNSET, log=UNSET, check=UNSET):
    return bytes([small_chunk, lmin, lmax, small_req, stitch, stitch_min, reuse, when,
                  gc_bytes, gc_count, limit, log, check])


# config_value(): 128 + i picks fixed[i] for i < 12: UNSET 0 1 2 3 512 4096 1MiB 12MiB MAX -5 2^40
# and 128 + 12 + j (j >= 0) picks g * ((12 + j) % 16) / 2.
def v_fixed(i):
    return 128 + i


def v_g_half(k):  # g * k / 2 for k in 0..15
    # (b - 128) % 16 == k with b - 128 >= 12
    for b in range(140, 256):
        if (b - 128) % 16 == k:
            return b
    raise ValueError(k)


def malloc(slot, cls, bits=0, stream=0):
    return bytes([0, slot, (stream << 5) | cls, bits & 255, bits >> 8 & 255])


def free(slot):
    return bytes([4, slot])


def record(slot, stream):
    return bytes([7, slot, stream])


def empty():
    return bytes([8])


def limit(v):
    return bytes([9, v])


def hold(stream):
    return bytes([10, stream])


def bad_free(slot, off):
    return bytes([11, slot, off & 255, off >> 8 & 255])


def fault(kind, k):
    return bytes([12, kind, k])


def disarm():
    return bytes([13])


def stats(reset=0):
    return bytes([14, reset])


def plant(slot):
    return bytes([15, slot])


def stitch_scenario():
    ops = b""
    for i in range(16):
        ops += malloc(i, 2)  # one granule each
    for i in range(0, 16, 2):
        ops += free(i)
    ops += malloc(20, 3, 2)  # 3 granules: stitched from scattered free chunks
    ops += free(20)
    ops += malloc(21, 3, 2)  # reuse of the cached range
    ops += malloc(22, 3, 1)
    ops += free(21) + free(22)
    ops += malloc(23, 3, 3) + free(23)
    return ops


def seeds():
    out = {}
    g_cfg = cfg(small_chunk=v_g_half(2), lmin=v_g_half(2), lmax=v_g_half(2),
                small_req=v_fixed(6), stitch=v_fixed(2), stitch_min=v_fixed(1),
                gc_count=v_fixed(3))
    for host in (0, 1):
        tag = "host" if host else "sim"
        out[f"stitch_{tag}"] = bytes([host]) + g_cfg + stitch_scenario() + stats()
        out[f"gc_{tag}"] = bytes([host]) + g_cfg + stitch_scenario() * 3 + empty()
        ops = malloc(1, 2) + hold(1) + record(1, 1) + free(1) + malloc(2, 2) + hold(1) + malloc(3, 2)
        ops += malloc(4, 0, 100, 2) + free(4) + malloc(5, 0, 100, 0) + empty()
        out[f"streams_{tag}"] = bytes([host]) + g_cfg + ops
        ops = limit(64 + 8) + b"".join(malloc(i, 3, 3) for i in range(8)) + limit(0)
        ops += b"".join(malloc(i, 3, 3) for i in range(8, 12)) + limit(64 + 2) + empty()
        out[f"limit_{tag}"] = bytes([host]) + g_cfg + ops
        ops = malloc(1, 4, 999) + malloc(2, 0, 17) + bad_free(1, 513) + free(2) + bad_free(5, 2)
        ops += bad_free(2, 0) + bytes([15, 3]) + stats(1)
        out[f"badfree_{tag}"] = bytes([host]) + g_cfg + ops
        ops = b""
        for k in range(1, 40, 3):
            ops += fault(k % 256, k) + malloc(k % 32, k % 8, k * 37) + free((k * 7) % 32)
        ops += disarm() + stitch_scenario() + fault(0, 2) + stitch_scenario() + disarm()
        out[f"faults_{tag}"] = bytes([host]) + g_cfg + ops
        rnd = random.Random(1234 + host)
        ops = b""
        for _ in range(300):
            r = rnd.random()
            if r < 0.5:
                ops += malloc(rnd.randrange(32), rnd.randrange(8), rnd.randrange(65536), rnd.randrange(4))
            elif r < 0.85:
                ops += free(rnd.randrange(32))
            elif r < 0.92:
                ops += record(rnd.randrange(32), rnd.randrange(4))
            elif r < 0.95:
                ops += empty()
            else:
                ops += stats(rnd.randrange(2))
        out[f"random_{tag}"] = bytes([host | rnd.randrange(4) << 1]) + g_cfg + ops
    # default configuration, small pool heavy
    out["defaults_small"] = bytes([0]) + cfg() + b"".join(malloc(i, 0, i * 131) for i in range(32)) + \
        b"".join(free(i) for i in range(0, 32, 3))
    # garbage configuration values
    out["garbage_config"] = bytes([2]) + bytes([128 + 9, 128 + 10, 128 + 11, 128 + 10, 128 + 4,
                                                128 + 9, 128 + 2, 128 + 3, 128 + 10, 128 + 9,
                                                128 + 2, 128 + 9, 128 + 10]) + stitch_scenario()
    # a block planted twice: only fuzz_alloc_planted understands opcode 15 that way
    out["plant_host"] = bytes([1]) + g_cfg + malloc(0, 3, 3) + malloc(1, 2) + plant(2) + free(0)
    out["plant_sim"] = bytes([0]) + g_cfg + malloc(0, 3, 3) + plant(2) + stats()
    return out


def trace_seeds():
    out = {}
    for name in sorted(os.listdir(DATA)):
        if not name.endswith(".trace.gz"):
            continue
        with gzip.open(os.path.join(DATA, name), "rt") as f:
            lines = [next(f) for _ in range(400)]
        text = "".join(lines).encode()
        base = name.split(".")[0]
        out[base + "_plain"] = b"\x00" + text
        out[base + "_gz"] = b"\x01" + text  # the target compresses it
    hdr = b"# vmstitch-trace v1\n# workload w\n# events 4 allocs 2 live_at_end 0\n"
    out["tiny"] = b"\x00" + hdr + b"a 0 100 0\na 1 200 1\nf 0\nf 1\n"
    out["bad_free"] = b"\x00" + hdr + b"a 0 100 0\nf 0\nf 0\n"
    out["bad_dup"] = b"\x00" + hdr + b"a 5 100 0\na 5 100 0\n"
    out["bad_size"] = b"\x00" + hdr + b"a 0 0 0\na 1 99999999999999999999 0\n"
    out["bad_op"] = b"\x00" + hdr + b"x 1 2 3\n"
    out["no_newline"] = b"\x00" + hdr + b"a 0 100 0"
    out["header_junk"] = b"\x00# vmstitch-trace v1\n# pytorch_peak_reserved abc\n# events x\n" + \
        b"# pytorch_run_seconds -1e999\n# workload " + b"w" * 300 + b"\na 1 1 4294967295\n"
    out["not_a_trace"] = b"\x00hello\n"
    out["corrupt_gz"] = b"\x00" + gzip.compress(b"# vmstitch-trace v1\na 0 1 0\n" * 50)[:60]
    out["long_line"] = b"\x00" + hdr + b"a 0 " + b"1" * 70000 + b" 0\n"
    return out


def main():
    for d, items in ((ALLOC, seeds()), (TRACE, trace_seeds())):
        os.makedirs(d, exist_ok=True)
        for old in os.listdir(d):
            os.remove(os.path.join(d, old))
        for name, data in items.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print(f"{d}: {len(items)} seeds")


if __name__ == "__main__":
    main()
