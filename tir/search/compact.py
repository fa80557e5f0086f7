"""A compact int8 copy of an index's features: a fast first pass whose top k is provably the exact one.

For a method whose test similarity is a weighted sum of dot products (``Method.similarity_terms``),
each gallery row x of a feature is kept as x~ = scale * int8 (per-row scale max|x| / 127, packed once
for fbgemm's u8 x s8 GEMM). The sentences' vectors q are put on one u8 grid, q~ = s * (u - z), so the
GEMM computes q~ . x~ exactly in int32 and only rounds when scaling the sum to float32 (at most three
roundings, 2^-21 relative). With the float32 dot product's own rounding (gamma_D = D u / (1 - D u),
u = 2^-24, any summation order), every row's exact score lies within

    e = sum_t (||wq - (wq)~|| ||x~|| + 2^-21 ||(wq)~|| ||x~|| + ||wq|| (||x - x~|| + gamma_D ||x||))

of its compact score c (each term's weight w goes into its query; the row norms are the largest over the
gallery, so e is one number per sentence), plus a small absolute term for the float32 sums. So with T the k-th largest
c - e, every row whose exact score can reach the k-th best has c + e >= T; those candidates (sorted by
gallery position, so ties keep gallery order) are re-scored by the method's own ``similarity`` in
float32 and ranked as evaluation ranks (``top_indices``). Rows left out score provably below the k-th.

The fbgemm kernels are CPU-only; where they are missing (another torch build or platform), the first
pass fails its self-check or the features are not finite, ``build`` returns None and search scans the
float32 features as before.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from tir.training.methods.base import Features
from tir.training.metrics import top_indices

UNIT = 2.0 ** -24  # float32 unit roundoff
GEMM_ROUNDING = 2.0 ** -21  # int32 sum -> float32 and two scale products, relative to |q~ . x~|
SUM_SLACK = 2.0 ** -18  # float32 sums of terms and bounds, relative to sum_t |w_t| ||q_t|| max ||x_t||
ROWS_PER_BLOCK = 8192  # rows quantised at a time when building (bounds the temporaries)
QUERIES_PER_PASS = 64  # sentences scored together (bounds the [sentences, gallery] temporaries)


def _round_up(value: torch.Tensor) -> torch.Tensor:
    """float64 -> float32, never below the float64 value."""
    return (value * (1 + 2.0 ** -20)).float()


@dataclass
class CompactTerm:
    """One feature of the similarity: its weight, fbgemm's packed int8 rows and the rows' bound parts."""

    name: str
    weight: float
    packed: Any  # torch.classes.quantized.LinearPackedParamsBase
    dim: int
    compact_norm: float  # max over rows of ||x~||
    exact_slack: float  # max over rows of ||x - x~|| + gamma_D ||x||
    largest: float  # max over rows of ||x|| + ||x - x~||


def quantize_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 rows, float32 per-row scales) with rows ~ scale * int8; a zero row gets scale 1."""
    scales = rows.abs().amax(dim=1) / 127
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    return torch.round(rows / scales[:, None]).clamp_(-127, 127).to(torch.int8), scales


def _pack(ints: torch.Tensor, scales: torch.Tensor) -> Any:
    with warnings.catch_warnings():  # quantized tensors are deprecated in torch 2.14, still the only int8 GEMM
        warnings.simplefilter("ignore")
        weight = torch._make_per_channel_quantized_tensor(ints, scales.double(), torch.zeros(len(scales), dtype=torch.long), 0)
        return torch.ops.quantized.linear_prepack(weight, None)


def quantize_queries(queries: torch.Tensor) -> tuple[torch.Tensor, float, int, torch.Tensor]:
    """(queries on the u8 grid as float32, grid step s, zero point z, q~ as float64) for ``queries`` [S, D]:
    q~ = s (u - z) with u in 0..127 (7 bits, so fbgemm's u8 x s8 pair sums cannot saturate int16)."""
    low, high = min(float(queries.min()), 0.0), max(float(queries.max()), 0.0)
    step = float(torch.tensor((high - low) / 127, dtype=torch.float32)) or 1.0
    zero = min(max(round(-low / step), 0), 127)
    units = (torch.round(queries.double() / step) + zero).clamp_(0, 127)
    grid = (units - zero) * step  # exact in float64
    return grid.float(), step, int(zero), grid


def compact_scores(term: CompactTerm, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c [S, N]: q~ . x~ by the int8 GEMM, q~ [S, D] float64) of one term for ``queries`` [S, D]."""
    grid, step, zero, exact = quantize_queries(queries)
    return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(grid, step, zero, term.packed), exact


def build_term(name: str, weight: float, rows: torch.Tensor) -> CompactTerm:
    """Quantise and pack one feature's rows [N, D] (float32) with the largest per-row bound parts.

    Norms are taken in float32 and rounded up: a float32 norm of D terms is within gamma_D (x 2 here) of
    the true one, and x - fl(int8 * scale) is within 3u (||x|| + ||x~||) of x - x~."""
    rows = rows.reshape(len(rows), -1)
    dim = rows.shape[1]
    up = 1 + 2 * gamma(dim) + 2 * UNIT
    ints_blocks, scale_blocks = [], []
    compact_norm = exact_slack = largest = 0.0
    for start in range(0, len(rows), ROWS_PER_BLOCK):
        block = rows[start:start + ROWS_PER_BLOCK]
        ints, scales = quantize_rows(block)
        ints_blocks.append(ints)
        scale_blocks.append(scales)
        dequantized = ints * scales[:, None]
        norm, compact = block.norm(dim=1).double() * up, dequantized.norm(dim=1).double() * up
        residual = (block - dequantized).norm(dim=1).double() * up + 3 * UNIT * (norm + compact)
        compact_norm = max(compact_norm, float(compact.max()))
        exact_slack = max(exact_slack, float((residual + gamma(dim) * norm).max()))
        largest = max(largest, float((norm + residual).max()))
    packed = _pack(torch.cat(ints_blocks), torch.cat(scale_blocks))
    return CompactTerm(name, weight, packed, dim, compact_norm, exact_slack, largest)


class CompactIndex:
    """The int8 first pass over an index's features for a similarity sum_t w_t q_t . x_t."""

    def __init__(self, terms: list[CompactTerm]) -> None:
        self.terms = terms

    @classmethod
    def build(cls, features: Features, similarity_terms: dict[str, float]) -> "CompactIndex | None":
        """The compact index of ``features`` (float32, CPU), or None where it cannot be proven exact here:
        features not finite, or fbgemm's int8 kernels missing or not computing q~ . x~ (self-check)."""
        if not similarity_terms or any(name not in features for name in similarity_terms):
            return None
        if any(features[name].device.type != "cpu" or not torch.isfinite(features[name]).all() for name in similarity_terms):
            return None
        try:
            index = cls([build_term(name, weight, features[name].float()) for name, weight in similarity_terms.items()])
            return index if index.self_check() else None
        except (RuntimeError, AttributeError, NotImplementedError):
            return None

    def self_check(self) -> bool:
        """Whether the int8 GEMM gives q~ . x~ within GEMM_ROUNDING on a random query and the first rows."""
        generator = torch.Generator().manual_seed(0)
        for term in self.terms:
            scores, exact_query = compact_scores(term, torch.randn(2, term.dim, generator=generator))
            rows = min(scores.shape[1], 512)
            weight = torch.ops.quantized.linear_unpack(term.packed)[0]
            dequantized = weight.int_repr()[:rows].double() * weight.q_per_channel_scales()[:rows, None].double()
            reference = exact_query @ dequantized.T
            allowed = GEMM_ROUNDING * exact_query.norm(dim=1, keepdim=True) * dequantized.norm(dim=1) + 1e-30
            if not bool(((scores[:, :rows].double() - reference).abs() <= allowed).all()):
                return False
        return True

    def bounds(self, text: Features) -> tuple[torch.Tensor, torch.Tensor]:
        """(compact scores c [S, N], bound e [S, 1]) for encoded sentences: every row's exact score
        (float32, any summation order) is within c +- e. Each term's weight goes into its queries (w q)."""
        compact, bound, scale = None, torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
        for term in self.terms:
            queries = text[term.name].reshape(len(text[term.name]), -1).double() * term.weight
            scores, grid = compact_scores(term, queries.float())
            query_norm = queries.norm(dim=1)
            grid_error = (queries - grid).norm(dim=1) + GEMM_ROUNDING * grid.norm(dim=1)
            bound = bound + grid_error * term.compact_norm + query_norm * term.exact_slack
            scale = scale + (query_norm + grid_error) * term.largest
            compact = scores if compact is None else compact.add_(scores)
        assert compact is not None
        return compact, _round_up(bound * (1 + 2.0 ** -16) + SUM_SLACK * scale)[:, None]

    def candidates(self, text: Features, k: int) -> torch.Tensor:
        """Gallery positions (ascending) of every row that can be among any sentence's exact top ``k``:
        those with c + e >= the k-th largest c - e."""
        compact, bound = self.bounds(text)
        kth = torch.topk(compact, min(k, compact.shape[1]), dim=1).values[:, -1:]
        reach = compact >= kth - 2 * bound
        return (reach[0] if len(reach) == 1 else reach.any(dim=0)).nonzero().squeeze(1)

    def top(self, similarity: Callable[[Features, Features], torch.Tensor], text: Features, image: Features,
            k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(exact similarity, gallery positions) of each sentence's top ``k`` in evaluation's order, the same
        as ``top_indices(similarity(text, image), k)``; only the candidates are scored in float32."""
        values, positions = [], []
        count = len(next(iter(text.values())))
        for start in range(0, count, QUERIES_PER_PASS):
            chunk = {name: value[start:start + QUERIES_PER_PASS] for name, value in text.items()}
            rows = self.candidates(chunk, k)
            exact = similarity(chunk, {name: value.index_select(0, rows) for name, value in image.items()})
            local = top_indices(exact, k)
            values.append(exact.gather(1, local))
            positions.append(rows[local])
        return torch.cat(values), torch.cat(positions)


def finite(text: Features) -> bool:
    """Whether every encoded sentence feature is finite (else the first pass's bounds mean nothing)."""
    return all(bool(torch.isfinite(value).all()) for value in text.values() if value.is_floating_point())


def gamma(dim: int) -> float:
    """The float32 dot product's relative error bound for ``dim`` terms, any summation order."""
    return dim * UNIT / (1 - dim * UNIT) if dim * UNIT < 1 else math.inf
