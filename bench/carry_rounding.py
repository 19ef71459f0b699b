#!/usr/bin/env python3
"""A state carried token by token in float32, x <- lambda x + k v, against float64: the three forms the batch step's
kernels could take (BENCHMARKS.md, "The carries written without a GPU, run on one"). numpy, no GPU:

  lambda rounded    fmaf(lambda_f32, x, kv)                   lambda's rounding, the same sign every token
  product           fmaf(k, v, fmaf(-comp, x, x))             x - comp x rounded alone to x's grid, where comp x is
                                                              about an ulp for a slow head: one sign again
  decayed (shipped) x - fmaf(comp, x, -kv)                    the rounding falls on the sum with k v, whose sign varies

comp = 1 - lambda = -expm1(-slope) in float32. An FMA is emulated as the float64 result of the float32 operands
rounded once to float32 (their product is exact in float64). Prints the relative error of the final x (64 lanes,
k and v uniform in [-1, 1)) per slope.
   python3 bench/carry_rounding.py [TOKENS]      (default 100,000, as BatchChecks.slowHeads)
"""
import sys

import numpy as np

f32, f64 = np.float32, np.float64


def run(slope, tokens, lanes=64, seed=1):
    rng = np.random.default_rng(seed)
    comp = f32(-np.expm1(-slope))
    lam = f32(np.exp(-slope))
    exact = np.exp(-slope)
    ref = np.zeros(lanes)
    rounded = np.zeros(lanes, f32)
    product = np.zeros(lanes, f32)
    decayed = np.zeros(lanes, f32)
    for _ in range(tokens):
        k = rng.uniform(-1, 1, lanes).astype(f32)
        v = rng.uniform(-1, 1, lanes).astype(f32)
        kv = (k * v).astype(f32)                                   # a multiply, rounded
        ref = exact * ref + k.astype(f64) * v
        rounded = (f64(lam) * rounded + kv).astype(f32)
        inner = (-f64(comp) * product + product).astype(f32)
        product = (k.astype(f64) * v + inner).astype(f32)
        decayed = (decayed - (f64(comp) * decayed - kv).astype(f32)).astype(f32)
    err = lambda x: float(np.linalg.norm(x - ref) / np.linalg.norm(ref))
    return err(rounded), err(product), err(decayed)


if __name__ == "__main__":
    tokens = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(f"{tokens} tokens; relative error of the final state against float64")
    print("slope        lambda rounded  product   decayed (shipped)")
    for slope in (-np.log1p(-200.5 * 2.0 ** -24), -np.log1p(-2.5 * 2.0 ** -24), 1e-3, 0.92, 8.0):
        r, p, d = run(slope, tokens)
        print(f"{slope:<12.4g} {r:<15.2e} {p:<9.2e} {d:.2e}")
