"""Throughput of `tir synth`: images/s and captions/s for a few dataset sizes, one process and all cores.

Usage: python benchmarks/synth.py [--sizes 60x4,300x4,1000x5] [--format CUHK-PEDES]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from tir.pipeline.synth import plan, synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="60x4,300x4,1000x5", help="comma-separated IDSxIMAGES_PER_ID")
    parser.add_argument("--format", default="CUHK-PEDES", help="raw dataset format to write: CUHK-PEDES, ICFG-PEDES or RSTPReid")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"tir synth {args.format}, 64x160 images, {cores} cores")
    print(f"{'ids x imgs':>11} {'jobs':>5} {'images':>7} {'captions':>9} {'seconds':>8} {'images/s':>9} "
          f"{'captions/s':>11} {'captions/s (text only)':>23}")
    for size in args.sizes.split(","):
        ids, per_id = (int(part) for part in size.split("x"))
        start = time.perf_counter()
        images = plan(args.format, ids, per_id, seed=0)
        text_only = sum(len(image.captions) for image in images) / (time.perf_counter() - start)
        for jobs in sorted({1, cores}):
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                summary = synthesize(args.format, out, ids, per_id, seed=0, jobs=jobs, progress=False)
                seconds = time.perf_counter() - start
            n_images = sum(split["images"] for split in summary["splits"].values())
            n_captions = sum(split["captions"] for split in summary["splits"].values())
            print(f"{size:>11} {jobs:>5} {n_images:>7} {n_captions:>9} {seconds:>8.2f} {n_images / seconds:>9.0f} "
                  f"{n_captions / seconds:>11.0f} {text_only:>23.0f}")


if __name__ == "__main__":
    main()
