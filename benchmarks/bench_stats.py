"""Benchmark cxrstats: AUROC and best-F1 threshold on 10^6 scores, Mantel with 9,999 permutations,
the stratified bootstrap (1,000 resamples of 2,000 scores) and DeLong's test on 2,000 scores.

Run: python -m benchmarks.bench_stats   (goal: each under 0.5 s on a 2-core CPU; the bootstrap
of one label well under 1 s)
Prints the best of a few repeats, in seconds.
"""
import argparse
import time

import numpy as np

from cxrstats import auroc, best_f1_threshold, bootstrap_aurocs, delong_macro, delong_test, mantel
from cxrstats.foundation.argtypes import Parser


def best_time(fn, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv=None):
    Parser(prog="python -m benchmarks.bench_stats", description=__doc__,
           formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    rng = np.random.default_rng(0)
    n = 1_000_000
    y = rng.integers(0, 2, n)
    score = np.round(rng.normal(size=n) + y, 3)  # rounded: many ties, as with float32 probabilities

    seconds, value = best_time(lambda: auroc(y, score))
    print(f"auroc, 10^6 scores:                 {seconds:.3f} s  (AUROC {value:.4f})")
    seconds, value = best_time(lambda: best_f1_threshold(y, score))
    print(f"best_f1_threshold, 10^6 scores:     {seconds:.3f} s  "
          f"(threshold {value.threshold:.3f}, F1 {value.f1:.4f})")

    for size in (6, 8):
        m = rng.integers(0, 100, (size, size))
        a = np.triu(m) + np.triu(m, 1).T
        b = a + rng.integers(0, 50, (size, size))
        b = np.triu(b) + np.triu(b, 1).T
        seconds, result = best_time(lambda: mantel(a, b, permutations=9999, method="spearman"))
        mode = f"exact, {result.permutations} permutations" if result.exact else \
            f"random, {result.permutations} permutations"
        print(f"mantel {size}x{size}, 9,999 requested ({mode}): {seconds:.3f} s  "
              f"(r {result.r:.3f}, p {result.p:.4f})")

    n = 2000
    labels = (rng.random((n, 5)) < 0.3).astype(int)
    scores = np.round(labels + rng.normal(size=(n, 5)), 3)
    other = np.round(0.8 * labels + rng.normal(size=(n, 5)), 3)
    seconds, result = best_time(lambda: bootstrap_aurocs(labels[:, :1], scores[:, :1], n_boot=1000))
    low, high = result.labels[0]
    print(f"bootstrap, 1,000 resamples of 2,000 scores, one label: {seconds:.3f} s  "
          f"(95% interval {low:.4f}-{high:.4f})")
    seconds, result = best_time(lambda: bootstrap_aurocs(labels, scores, n_boot=1000))
    print(f"bootstrap, 1,000 resamples, 2,000 x 5 labels + macro: {seconds:.3f} s  "
          f"(macro interval {result.macro[0]:.4f}-{result.macro[1]:.4f})")
    seconds, result = best_time(lambda: delong_test(labels[:, 0], scores[:, 0], other[:, 0]))
    print(f"delong_test, 2,000 scores:          {seconds:.4f} s  "
          f"(z {result.z:.2f}, p {result.p:.3g})")
    seconds, result = best_time(lambda: delong_macro(labels, scores, other))
    print(f"delong_macro, 2,000 x 5 labels:     {seconds:.4f} s  "
          f"(z {result.z:.2f}, p {result.p:.3g})")


if __name__ == "__main__":
    main()
