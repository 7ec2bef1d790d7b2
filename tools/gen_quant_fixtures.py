#!/usr/bin/env python3
"""Writes the bit-exactness fixtures of tests/test_quant.cc to testdata/quant/ (developer-only).

Needs numpy, the PyPI `gguf` package and llama-cpp-python (for the libggml-base shared library it
ships); CI only reads the committed output. For each type the expected quantized bytes and
dequantized floats come from:
  * gguf.quants (numpy) where it implements the operation (quantize: F16, BF16, Q4_0..Q8_0;
    dequantize: also Q2_K..Q6_K), cross-checked against ggml's C reference where that exists;
  * ggml's C reference through ctypes (quantize_row_*_ref, dequantize_row_*) otherwise (k-quants,
    Q8_1, Q8_K quantize; Q8_K dequantize). Q8_1 dequantize (d * q, one float multiply) is numpy.
  * NF4 and FP8 have no GGUF reference: NF4 is a numpy transcription of bitsandbytes' rule and FP8
    a brute-force nearest-value search over all 256 codes (ties to the even code), independent of
    the C++ bit manipulation it checks.

File format (little endian), testdata/quant/inputs.bin: u32 magic 'LKQI', u32 rows, u32 n_per_row,
f32 x[rows][n]. testdata/quant/<type>.bin: u32 magic 'LKQF', u32 rows, u32 n_per_row,
u32 row_bytes, u8 q[rows][row_bytes], f32 deq[rows][n]; the input is inputs.bin (or, for fp8,
a u32 count + f32 values of its own after the header: see write_fp8).

Run: python3 tools/gen_quant_fixtures.py [--check]
"""
import ctypes
import glob
import os
import struct
import sys

import numpy as np
import gguf
import gguf.quants as gq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "testdata", "quant")
ROWS, N = 8, 512  # 8 rows of 2 k-quant super-blocks (16 legacy blocks) each

QT = gguf.GGMLQuantizationType
# llmkit name -> (ggml type, C suffix for quantize_row_<s>_ref / dequantize_row_<s>)
GGUF_TYPES = {
    "f16": (QT.F16, None), "bf16": (QT.BF16, None),
    "q4_0": (QT.Q4_0, "q4_0"), "q4_1": (QT.Q4_1, "q4_1"), "q5_0": (QT.Q5_0, "q5_0"),
    "q5_1": (QT.Q5_1, "q5_1"), "q8_0": (QT.Q8_0, "q8_0"), "q8_1": (QT.Q8_1, "q8_1"),
    "q2_k": (QT.Q2_K, "q2_K"), "q3_k": (QT.Q3_K, "q3_K"), "q4_k": (QT.Q4_K, "q4_K"),
    "q5_k": (QT.Q5_K, "q5_K"), "q6_k": (QT.Q6_K, "q6_K"), "q8_k": (QT.Q8_K, "q8_K"),
}


def make_inputs(rng):
    """Rows mixing the cases the quantizers branch on."""
    x = np.zeros((ROWS, N), np.float32)
    x[0] = rng.standard_normal(N)                                   # plain normal
    x[1] = rng.standard_normal(N) * 0.02                             # weight-like scale
    x[1, rng.integers(0, N, 6)] *= 300.0                              # + outliers
    x[2] = rng.standard_normal(N); x[2, 256:] = 0.0                   # an all-zero super-block
    x[2, 32:64] = 0.0                                                 # and an all-zero legacy block
    x[3] = rng.standard_normal(N) * 1e-6                              # tiny values (f16 subnormal d)
    x[3, 128:160] *= 1e-3
    x[4] = np.abs(rng.standard_normal(N)) + 0.5                      # all positive (min > 0)
    x[4, 300:316] = 1.25                                              # a constant sub-block
    x[5] = -np.abs(rng.standard_normal(N)) * 40.0                     # all negative, large
    x[6] = rng.uniform(-1, 1, N).astype(np.float32)                   # uniform
    x[6, ::7] = np.float32(0.5)                                       # exact halves / ties
    x[7] = (rng.standard_t(3, N) * 0.1)                               # heavy tails
    x[7, 200:216] = -3.0
    x[7, 216:232] = 1e4
    return x.astype(np.float32)


def load_ggml():
    import llama_cpp
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    path = sorted(glob.glob(os.path.join(libdir, "libggml-base.so*")))[0]
    return ctypes.CDLL(path)


def ggml_quantize(lib, suffix, x, row_bytes):
    out = np.zeros((ROWS, row_bytes), np.uint8)  # zeroed: q8_K leaves bsums unset on zero blocks
    fn = getattr(lib, f"quantize_row_{suffix}_ref")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    for r in range(ROWS):
        xr = np.ascontiguousarray(x[r])
        fn(xr.ctypes.data, out[r].ctypes.data, N)
    return out


def ggml_dequantize(lib, suffix, q):
    fn = getattr(lib, f"dequantize_row_{suffix}", None)
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    out = np.zeros((ROWS, N), np.float32)
    for r in range(ROWS):
        qr = np.ascontiguousarray(q[r])
        fn(qr.ctypes.data, out[r].ctypes.data, N)
    return out


def write(name, q, deq, n=N):
    q = np.ascontiguousarray(q, np.uint8)
    with open(os.path.join(OUT, f"{name}.bin"), "wb") as f:
        f.write(struct.pack("<4I", 0x46514B4C, q.shape[0], n, q.shape[1]))
        f.write(q.tobytes())
        f.write(np.ascontiguousarray(deq, np.float32).tobytes())


def same_bits(a, b):
    return a is not None and b is not None and np.array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))


def gen_gguf_types(x, notes):
    lib = load_ggml()
    for name, (qt, suffix) in GGUF_TYPES.items():
        bs, ts = gq.GGML_QUANT_SIZES[qt]
        if name == "q8_1":
            ts = 36  # gguf-py lists the old f32 (d, s) layout (40 bytes); ggml's block_q8_1 is 2 x f16
        row_bytes = N // bs * ts
        q_np = q_c = None
        try:
            q_np = np.ascontiguousarray(gq.quantize(x, qt)).view(np.uint8).reshape(ROWS, row_bytes)
        except NotImplementedError:
            pass
        if suffix:
            q_c = ggml_quantize(lib, suffix, x, row_bytes)
        if name == "bf16":
            fn = lib.ggml_fp32_to_bf16_row_ref
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            q_c = np.zeros((ROWS, row_bytes), np.uint8)
            xr = np.ascontiguousarray(x)
            fn(xr.ctypes.data, q_c.ctypes.data, ROWS * N)
        q = q_np if q_np is not None else q_c
        qsrc = "gguf-numpy" if q_np is not None else "libggml"
        if q_np is not None and q_c is not None:
            qsrc += "=libggml" if same_bits(q_np, q_c) else " (libggml DIFFERS)"
        d_np = d_c = None
        try:
            d_np = gq.dequantize(q, qt).reshape(ROWS, N).astype(np.float32)
        except NotImplementedError:
            pass
        if suffix:
            d_c = ggml_dequantize(lib, suffix, q)
        if name == "q8_1":  # d * q in float32: y[j] = qs[j] * d
            blocks = q.reshape(-1, 36)
            d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
            qs = blocks[:, 4:].view(np.int8).astype(np.float32)
            d_np = (qs * d).reshape(ROWS, N).astype(np.float32)
        deq = d_np if d_np is not None else d_c
        dsrc = "gguf-numpy" if d_np is not None and name != "q8_1" else ("numpy d*q" if name == "q8_1" else "libggml")
        if d_np is not None and d_c is not None:
            dsrc += "=libggml" if same_bits(d_np, d_c) else " (libggml DIFFERS)"
        write(name, q, deq)
        notes.append(f"{name}: quantize {qsrc}; dequantize {dsrc}")


NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], np.float32)


def gen_nf4(x, notes):
    mids = (0.5 * (NF4[:-1].astype(np.float64) + NF4[1:].astype(np.float64))).astype(np.float32)
    b = x.reshape(-1, 64)
    absmax = np.abs(b).max(axis=1).astype(np.float32)
    inv = np.where(absmax > 0, np.float32(1.0) / np.where(absmax > 0, absmax, 1), 0).astype(np.float32)
    v = (b * inv[:, None]).astype(np.float32)
    codes = (v[:, :, None] > mids[None, None, :]).sum(axis=2).astype(np.uint8)
    packed = (codes[:, 0::2] << 4) | codes[:, 1::2]
    blocks = np.concatenate([absmax.view(np.uint8).reshape(-1, 4), packed], axis=1)
    deq = (NF4[codes] * absmax[:, None]).astype(np.float32)
    write("nf4", blocks.reshape(ROWS, -1), deq.reshape(ROWS, N))
    notes.append("nf4: numpy transcription of bitsandbytes' midpoint rule (no bitsandbytes here)")


def fp8_table(mbits, bias, e4m3):
    vals = []
    for c in range(128):
        e, m = c >> mbits, c & ((1 << mbits) - 1)
        v = m * 2.0 ** (1 - bias - mbits) if e == 0 else ((1 << mbits) | m) * 2.0 ** (e - bias - mbits)
        vals.append(v)
    return np.array(vals)


def fp8_encode(xs, mbits, bias, e4m3):
    tab = fp8_table(mbits, bias, e4m3)
    n_finite = 0x7F if e4m3 else 0x7C  # codes 0..n_finite-1 are finite
    cand = tab[:n_finite + (0 if e4m3 else 1)]  # e5m2: code 0x7C (Inf) sits at 2^16 for rounding
    out = []
    for xv in xs:
        s = 0x80 if np.signbit(xv) else 0
        if np.isnan(xv):
            out.append(s | (0x7F if e4m3 else 0x7E)); continue
        a = abs(float(xv))
        if np.isinf(xv) or (e4m3 and a >= 448.0):
            out.append(s | (0x7E if e4m3 else 0x7C)); continue
        dist = np.abs(cand - a)
        best = np.flatnonzero(dist == dist.min())
        c = int(best[0]) if len(best) == 1 else int([b for b in best if b % 2 == 0][0])
        out.append(s | c)
    return np.array(out, np.uint8)


def fp8_decode(codes, mbits, bias, e4m3):
    tab = fp8_table(mbits, bias, e4m3)
    out = []
    for c in codes:
        s = -1.0 if c & 0x80 else 1.0
        m = c & 0x7F
        if e4m3 and m == 0x7F: out.append(np.nan)
        elif not e4m3 and m >= 0x7C: out.append(s * np.inf if m == 0x7C else np.nan)
        else: out.append(s * tab[m])
    return np.array(out, np.float32)


def gen_fp8(x, rng, notes):
    specials = [0.0, -0.0, 448.0, 464.0, 465.0, 480.0, 500.0, -1e9, np.inf, -np.inf, 57344.0, 61439.0,
                61440.0, 1e5, 2.0 ** -9, 2.0 ** -10, 3 * 2.0 ** -11, 2.0 ** -16, 2.0 ** -17, 3 * 2.0 ** -18,
                1e-30, 0.0625 * 1.0625, 1.0 + 1.0 / 16, 1.0 + 3.0 / 16, 1.0 + 1.0 / 8, 1.0 + 3.0 / 8]
    xs = np.concatenate([np.array(specials, np.float32), x[0, :64], x[1, :64] * 100, x[3, :32] * 1e4,
                         (rng.standard_normal(96) * 300).astype(np.float32)]).astype(np.float32)
    for name, mbits, bias, e4m3 in (("f8_e4m3", 3, 7, True), ("f8_e5m2", 2, 15, False)):
        q = fp8_encode(xs, mbits, bias, e4m3)
        deq = fp8_decode(q, mbits, bias, e4m3)
        with open(os.path.join(OUT, f"{name}.bin"), "wb") as f:
            f.write(struct.pack("<4I", 0x46514B4C, 1, len(xs), len(xs)))
            f.write(q.tobytes()); f.write(deq.tobytes()); f.write(xs.tobytes())
        notes.append(f"{name}: brute-force nearest code (ties to even), {len(xs)} values incl. specials")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261127)
    x = make_inputs(rng)
    with open(os.path.join(OUT, "inputs.bin"), "wb") as f:
        f.write(struct.pack("<3I", 0x49514B4C, ROWS, N))
        f.write(x.tobytes())
    notes = []
    gen_gguf_types(x, notes)
    gen_nf4(x, notes)
    gen_fp8(x, rng, notes)
    with open(os.path.join(OUT, "SOURCES.txt"), "w") as f:
        f.write(f"Generated by tools/gen_quant_fixtures.py (gguf {gguf.__version__ if hasattr(gguf, '__version__') else '?'},"
                f" numpy {np.__version__}).\n")
        f.write("\n".join(notes) + "\n")
    print("\n".join(notes))
    return 0 if not any("DIFFERS" in n for n in notes) else 1


if __name__ == "__main__":
    sys.exit(main())
