"""Benchmark cxrstats: AUROC and best-F1 threshold on 10^6 scores, Mantel with 9,999 permutations.

Run: python tests/benchmarks/bench_stats.py   (goal: each under 0.5 s on a 2-core CPU)
Prints the best of a few repeats, in seconds.
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from cxrstats import auroc, best_f1_threshold, mantel  # noqa: E402


def best_time(fn, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main():
    rng = np.random.default_rng(0)
    n = 1_000_000
    y = rng.integers(0, 2, n)
    score = np.round(rng.normal(size=n) + y, 3)  # rounded: many ties, as with float32 probabilities

    seconds, value = best_time(lambda: auroc(y, score))
    print(f"auroc, 10^6 scores:                 {seconds:.3f} s  (AUROC {value:.4f})")
    seconds, value = best_time(lambda: best_f1_threshold(y, score))
    print(f"best_f1_threshold, 10^6 scores:     {seconds:.3f} s  (threshold {value.threshold:.3f}, F1 {value.f1:.4f})")

    for size in (6, 8):
        m = rng.integers(0, 100, (size, size))
        a = np.triu(m) + np.triu(m, 1).T
        b = a + rng.integers(0, 50, (size, size))
        b = np.triu(b) + np.triu(b, 1).T
        seconds, result = best_time(lambda: mantel(a, b, permutations=9999, method="spearman"))
        mode = f"exact, {result.permutations} permutations" if result.exact else \
            f"random, {result.permutations} permutations"
        print(f"mantel {size}x{size}, 9,999 requested ({mode}): {seconds:.3f} s  (r {result.r:.3f}, p {result.p:.4f})")


if __name__ == "__main__":
    main()
