"""tir.training.dot: a @ b.T through numpy's BLAS or torch, the choice, its override and its fall-backs."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

import tir.training.dot as dot_module
from tir.errors import UserError
from tir.training.dot import ENVIRONMENT, dot, numpy_blas_chosen


def operands(seed: int = 0, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(37, 64, generator=generator, dtype=dtype), torch.randn(53, 64, generator=generator, dtype=dtype)


@pytest.mark.parametrize("choice", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_products_equal_the_chosen_librarys_bit_for_bit(monkeypatch: pytest.MonkeyPatch, choice: str, dtype) -> None:
    monkeypatch.setenv(ENVIRONMENT, choice)
    a, b = operands(dtype=dtype)
    expected = torch.from_numpy(a.numpy() @ b.numpy().T) if choice == "numpy" else a @ b.t()
    assert torch.equal(dot(a, b), expected)
    out = torch.full((37, 53), float("nan"), dtype=dtype)
    assert dot(a, b, out=out) is out and torch.equal(out, expected)
    column_major = dot(a, b.t().contiguous().t())  # handed to BLAS as it is (MKL may then sum in another order)
    assert torch.equal(column_major, expected) if choice == "numpy" else torch.allclose(column_major, expected)
    torch.testing.assert_close(dot(a, b), a.double() @ b.double().t(), rtol=1e-5, atol=1e-4, check_dtype=False)


def test_what_numpy_cannot_take_goes_through_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRONMENT, "numpy")
    a, b = operands(1)
    learned = a.clone().requires_grad_()
    product = dot(learned, b)
    product.sum().backward()  # autograd sees the product
    torch.testing.assert_close(learned.grad, b.sum(0).expand_as(a))
    strided = torch.randn(37, 128)[:, ::2]  # neither rows nor columns contiguous
    assert torch.equal(dot(strided, b), strided @ b.t())
    assert torch.equal(dot(a.half(), b.half()), a.half() @ b.half().t())
    with pytest.raises(RuntimeError):  # mixed dtypes: torch's own error
        dot(a, b.double())


def test_the_override_is_checked_and_the_automatic_choice_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRONMENT, "openblas")
    with pytest.raises(UserError, match="TIR_CPU_MATMUL='openblas' is not a choice"):
        numpy_blas_chosen()
    monkeypatch.delenv(ENVIRONMENT)
    vendor = dot_module._cpu_vendor()
    expected = (vendor not in ("", "GenuineIntel") and torch.backends.mkl.is_available()
                and dot_module._numpy_uses_openblas())
    assert numpy_blas_chosen() is expected


def test_numpy_runs_on_torchs_thread_count_and_leaves_openblas_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRONMENT, "numpy")
    seen: list[int] = []
    real_matmul = np.matmul

    def spying_matmul(*args, **kwargs):
        seen.extend(info["num_threads"] for info in threadpool_info() if info["internal_api"] == "openblas")
        return real_matmul(*args, **kwargs)

    before = [info["num_threads"] for info in threadpool_info() if info["internal_api"] == "openblas"]
    if not before:
        pytest.skip("numpy here does not use OpenBLAS")
    monkeypatch.setattr(dot_module.np, "matmul", spying_matmul)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        dot(*operands(2))
    finally:
        torch.set_num_threads(threads)
    assert seen and set(seen) == {1}
    assert [info["num_threads"] for info in threadpool_info() if info["internal_api"] == "openblas"] == before


@pytest.mark.parametrize("preset", [None, "12"])
def test_importing_tir_first_shortens_openblas_spinning_unless_the_user_chose(preset: str | None) -> None:
    env = {key: value for key, value in os.environ.items() if key != "OPENBLAS_THREAD_TIMEOUT"}
    if preset is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = preset
    shown = subprocess.run([sys.executable, "-c", "import tir, os; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert shown == (preset or "4")
