"""The demo's chance level: expected R@K of a random ranking."""

from __future__ import annotations

import itertools

import pytest

from tir.demo import chance_levels


def test_chance_levels_match_enumeration():
    gallery = [0, 0, 1, 2, 2, 2]
    queries = [0, 1, 2]
    levels = chance_levels(gallery, queries)
    # enumerate every ordering of the gallery: share of orderings with a hit in the top k
    orders = list(itertools.permutations(range(len(gallery))))
    for k in (1, 5):
        expected = sum(
            sum(any(gallery[i] == pid for i in order[:k]) for order in orders) / len(orders) for pid in queries
        ) / len(queries)
        assert levels[f"R{k}"] == pytest.approx(100 * expected)
    assert levels["R10"] == pytest.approx(100.0)
