"""tir: text-to-image person re-identification toolkit."""

import os

__version__ = "0.1.0"

# numpy's OpenBLAS (which computes tir's CPU similarities on non-Intel CPUs, tir.training.dot) keeps its worker
# threads spinning for about 2^28 cycles after each product; evaluation's compiled ranking, which follows every
# product, then shares the cores with them (100,000 queries: 9.1 s of ranking instead of 5.6). 2^4 cycles makes them
# sleep at once. Read when OpenBLAS loads, so it only applies where tir is imported before numpy (the `tir` command);
# a value already in the environment is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
