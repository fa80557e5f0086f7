"""Dot products of feature rows (``a @ b.T``), the matrix product behind every test similarity.

On CUDA, and on CPUs where torch's own BLAS is the right one, this is ``torch.mm``. torch's CPU wheels
multiply through Intel's MKL, which takes slower code paths on other vendors' CPUs: on this project's AMD EPYC
(Zen 3, 2 cores) numpy's OpenBLAS computes a 671 x 512 x 100,000 float32 product at 127-133 GFLOP/s where
``torch.mm`` reaches 63-95 (``benchmarks/eval.py`` prints both libraries' rate on a 4096^3 product). So on a
non-Intel CPU, with torch on MKL and numpy on OpenBLAS, float32 and float64 products of CPU tensors go through
numpy, on as many threads as torch uses (``torch.set_num_threads``); ``TIR_CPU_MATMUL=torch`` or ``=numpy``
overrides the choice. Both are exact float products summed in a different order, so scores may differ in the
last bit between the two (as between any two BLAS libraries or devices); every similarity in tir goes through
this function, so evaluation, validation and search agree with each other.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import torch

from tir.errors import UserError

ENVIRONMENT = "TIR_CPU_MATMUL"


def dot(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b.T`` for 2-D ``a`` [n, d] and ``b`` [m, d], into ``out`` [n, m] when given."""
    if _through_numpy(a, b, out):
        result = out if out is not None else a.new_empty((a.shape[0], b.shape[0]))
        with _openblas_threads(torch.get_num_threads()):
            np.matmul(a.numpy(), b.numpy().T, out=result.numpy())
        return result
    return torch.mm(a, b.t(), out=out) if out is not None else a @ b.t()


def numpy_blas_chosen() -> bool:
    """Whether CPU products go through numpy's BLAS in this process (see the module docstring)."""
    choice = os.environ.get(ENVIRONMENT, "").strip().lower()
    if choice in ("torch", "numpy"):
        return choice == "numpy"
    if choice:
        raise UserError(f"{ENVIRONMENT}={choice!r} is not a choice: set it to 'torch' or 'numpy', or unset it for the automatic one")
    return _automatic_choice()


@lru_cache(maxsize=1)
def _automatic_choice() -> bool:
    return torch.backends.mkl.is_available() and _numpy_uses_openblas() and _cpu_vendor() not in ("", "GenuineIntel")


def _numpy_uses_openblas() -> bool:
    try:
        name = str(np.__config__.CONFIG["Build Dependencies"]["blas"]["name"])
    except (AttributeError, KeyError, TypeError):
        return False
    return "openblas" in name.lower()


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _plain(tensor: torch.Tensor) -> bool:
    """A CPU tensor numpy can hand to BLAS as it is: float32/float64, no autograd, rows or columns contiguous."""
    return (tensor.device.type == "cpu" and tensor.dtype in (torch.float32, torch.float64) and tensor.ndim == 2
            and not tensor.requires_grad and (tensor.is_contiguous() or tensor.t().is_contiguous()))


def _through_numpy(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None) -> bool:
    if not (_plain(a) and _plain(b) and a.dtype == b.dtype and a.shape[1] == b.shape[1]):
        return False
    if out is not None and not (_plain(out) and out.dtype == a.dtype and out.is_contiguous()
                                and out.shape == (a.shape[0], b.shape[0])):
        return False
    return numpy_blas_chosen()


@lru_cache(maxsize=1)
def _openblas():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(internal_api="openblas")


def _openblas_threads(count: int):
    """numpy's OpenBLAS limited to ``count`` threads for the duration of a ``with``."""
    return _openblas().limit(limits=max(1, count))
