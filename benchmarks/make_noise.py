"""Throughput of `tir make-noise`: RDE's generator, the Parquet write and .npy validation.

`python benchmarks/make_noise.py [--sizes 68126,1000000]` prints train pairs/s for each part.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from tir.knowledge.noise import noise_table, rde_sources, read_npy
from tir.pipeline import store


def timed(function, *args) -> tuple[float, object]:
    """Seconds taken by the best of three calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(3):
        started = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="68126,1000000", help="Comma-separated numbers of train pairs.")
    parser.add_argument("--rate", type=float, default=0.5, help="Noise rate.")
    args = parser.parse_args()
    print(f"# {platform.machine()}, {platform.processor() or 'cpu'}, numpy {np.__version__}")
    print("| train pairs | generator pairs/s | parquet write pairs/s | .npy validation pairs/s |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(size) for size in args.sizes.split(",")):
            gen_s, sources = timed(rde_sources, n, args.rate, 1)
            out = Path(tmp) / f"{n}.parquet"
            write_s, _ = timed(lambda: store.write_table(noise_table(sources), out, stage="make-noise", options={}, inputs={}))
            npy = Path(tmp) / f"{n}.npy"
            np.save(npy, sources)
            check_s, _ = timed(read_npy, npy, n)
            print(f"| {n:,} | {n / gen_s:,.0f} | {n / write_s:,.0f} | {n / check_s:,.0f} |")


if __name__ == "__main__":
    main()
