"""Scene-graph scoring: hand-computed cases, and the validity of the gold set it is used with."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tir.knowledge.graph_scoring import (
    LevelScore,
    graph_from_row,
    graph_multisets,
    normalise_attribute,
    normalise_graph,
    normalise_head,
    read_graphs,
    score_graphs,
)

GOLD = Path(__file__).parent / "data" / "gold_graphs.jsonl"

MAN = {
    "objects": ["man", "shirt", "jeans"],
    "attributes": [[1, "white"], [2, "blue"]],
    "relations": [[0, "wear", 1], [0, "wear", 2]],
}


def prf(score: LevelScore) -> tuple[float, float, float]:
    return round(score.precision, 4), round(score.recall, 4), round(score.f1, 4)


def test_perfect_prediction_scores_one() -> None:
    scores = score_graphs([MAN, MAN], [MAN, MAN])
    assert {level: prf(s) for level, s in scores.items()} == {
        "objects": (1.0, 1.0, 1.0),
        "attributes": (1.0, 1.0, 1.0),
        "relations": (1.0, 1.0, 1.0),
    }
    assert scores["objects"] == LevelScore(6, 6, 6)


def test_partial_prediction() -> None:
    # objects: man, shirt, pants (jeans missed, pants extra) -> 2 of 3 / 2 of 3.
    # attributes: (shirt, white) right, (pants, blue) wrong -> 1/2 and 1/2 of gold.
    # relations: only [man, wear, shirt] predicted -> P 1/1, R 1/2.
    pred = {
        "objects": ["man", "shirt", "pants"],
        "attributes": [[1, "white"], [2, "blue"]],
        "relations": [[0, "wear", 1]],
    }
    scores = score_graphs([pred], [MAN])
    assert scores["objects"] == LevelScore(2, 3, 3)
    assert prf(scores["objects"]) == (0.6667, 0.6667, 0.6667)
    assert scores["attributes"] == LevelScore(1, 2, 2)
    assert scores["relations"] == LevelScore(1, 1, 2)
    assert prf(scores["relations"]) == (1.0, 0.5, 0.6667)


def test_micro_average_over_captions() -> None:
    empty = {"objects": [], "attributes": [], "relations": []}
    scores = score_graphs([MAN, empty], [MAN, MAN])
    # second caption predicted nothing: 3 + 0 matched objects, 3 predicted, 6 expected.
    assert scores["objects"] == LevelScore(3, 3, 6)
    assert prf(scores["objects"]) == (1.0, 0.5, 0.6667)


def test_duplicates_count_as_multisets() -> None:
    gold = {
        "objects": ["woman", "bag", "bag"],
        "attributes": [[1, "black"], [2, "black"]],
        "relations": [[0, "carry", 1], [0, "carry", 2]],
    }
    one_bag = {"objects": ["woman", "bag"], "attributes": [[1, "black"]], "relations": [[0, "carry", 1]]}
    three_bags = {
        "objects": ["woman", "bag", "bag", "bag"],
        "attributes": [[1, "black"], [2, "black"], [3, "black"]],
        "relations": [[0, "carry", 1], [0, "carry", 2], [0, "carry", 3]],
    }
    short = score_graphs([one_bag], [gold])
    assert short["objects"] == LevelScore(2, 2, 3)
    assert short["attributes"] == LevelScore(1, 1, 2)
    assert short["relations"] == LevelScore(1, 1, 2)
    extra = score_graphs([three_bags], [gold])
    assert extra["objects"] == LevelScore(3, 4, 3)
    assert extra["relations"] == LevelScore(2, 3, 2)


def test_pronouns_map_to_the_person_head() -> None:
    gold = {"objects": ["lady", "bag"], "attributes": [], "relations": [[0, "carry", 1]]}
    pred = {"objects": ["lady", "She", "bag"], "attributes": [], "relations": [[1, "carry", 2]]}
    scores = score_graphs([pred], [gold])
    assert scores["relations"] == LevelScore(1, 1, 1)
    # the pronoun node is a second "lady": a duplicate object, so object precision drops.
    assert scores["objects"] == LevelScore(2, 3, 2)
    # without a person noun in the graph, he -> man, she -> woman, they -> person.
    assert normalise_graph({"objects": ["he", "hat"]})["objects"] == ["man", "hat"]
    assert normalise_graph({"objects": ["her", "hat"]})["objects"] == ["woman", "hat"]
    assert normalise_graph({"objects": ["they"]})["objects"] == ["person"]


def test_spelling_variants_are_equal() -> None:
    gold = {"objects": ["man", "t-shirt", "hair"], "attributes": [[1, "grey"], [2, "blonde"], [1, "short-sleeved"]]}
    pred = {"objects": ["Man", "T shirt", "hair"], "attributes": [[1, "gray"], [2, "blond"], [1, "short sleeve"]]}
    scores = score_graphs([pred], [gold])
    assert scores["objects"] == LevelScore(3, 3, 3)
    assert scores["attributes"] == LevelScore(3, 3, 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("short sleeve", "short-sleeved"),
        ("Short Sleeved", "short-sleeved"),
        ("long-sleeve", "long-sleeved"),
        ("quarter sleeved", "quarter-sleeved"),
        ("dark colored", "dark"),
        ("light-coloured", "light"),
        ("navy color", "navy"),
        ("multi color", "multi-colored"),
        ("multicolored", "multi-colored"),
        ("stripe", "striped"),
        ("print", "printed"),
        ("loose fitting", "loose-fitting"),
        ("knee length", "knee-length"),
        ("dark grey", "dark gray"),
        ("Blonde", "blond"),
    ],
)
def test_normalise_attribute(text: str, expected: str) -> None:
    assert normalise_attribute(text) == expected


def test_normalise_head() -> None:
    assert [normalise_head(h) for h in ["tshirt", "t shirt", "Back Pack", "hand bag", "pony tail", "Shoe"]] == [
        "t-shirt",
        "t-shirt",
        "backpack",
        "handbag",
        "ponytail",
        "shoe",
    ]


def test_multisets_of_one_graph() -> None:
    sets = graph_multisets(MAN)
    assert sets["objects"] == Counter({"man": 1, "shirt": 1, "jeans": 1})
    assert sets["attributes"] == Counter({("shirt", "white"): 1, ("jeans", "blue"): 1})
    assert sets["relations"] == Counter({("man", "wear", "shirt"): 1, ("man", "wear", "jeans"): 1})


def test_graph_from_row_maps_ids_to_positions() -> None:
    row = {
        "objects": [
            {"id": 3, "text": "woman", "head": "woman", "start": 2, "end": 7},
            {"id": 7, "text": "t shirt", "head": "t-shirt", "start": 13, "end": 20},
        ],
        "attributes": [{"object": 7, "text": "red", "start": 9, "end": 12}],
        "relations": [{"subject": 3, "predicate": "in", "object": 7, "start": 8, "end": 20}],
    }
    expected = {"objects": ["woman", "t-shirt"], "attributes": [[1, "red"]], "relations": [[0, "in", 1]]}
    assert graph_from_row(row) == expected
    assert graph_from_row({"objects": None, "attributes": None, "relations": None}) == {
        "objects": [],
        "attributes": [],
        "relations": [],
    }


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        score_graphs([MAN], [MAN, MAN])


# --- the gold set --------------------------------------------------------------------------------

NOT_ATTRIBUTES = {
    "a", "an", "the", "some", "both", "two", "three", "one", "other", "another", "each", "every", "his", "her",
    "their", "its", "young", "old", "adult", "left", "right", "matching", "nike", "white-skinned", "asian",
}  # fmt: skip
PLURAL_ONLY = set("pants jeans shorts glasses sunglasses trousers leggings slacks capris clothes bangs woods".split())


@pytest.fixture(scope="module")
def gold() -> list[dict]:
    return read_graphs(GOLD)


def test_gold_set_size_and_styles(gold: list[dict]) -> None:
    assert len(gold) >= 160
    assert {g["style"] for g in gold} == {"cuhk", "icfg", "rstp"}
    ids = [g["id"] for g in gold]
    assert len(set(ids)) == len(ids)
    assert len({g["caption"] for g in gold}) == len(gold)


def test_gold_graphs_are_valid(gold: list[dict]) -> None:
    for g in gold:
        where = g["id"]
        objects, n = g["objects"], len(g["objects"])
        assert g["caption"].strip() and n, where
        assert set(g) == {"id", "style", "caption", "objects", "attributes", "relations"}, where
        for head in objects:
            assert head and head == head.strip().lower() == normalise_head(head), (where, head)
            assert not head.endswith("s") or head in PLURAL_ONLY or head.endswith("ss"), (where, head)
            assert head not in {"he", "she", "they", "him", "her", "who"}, (where, head)
        for position, text in g["attributes"]:
            assert 0 <= position < n, where
            assert text and text == text.strip().lower(), (where, text)
            assert text not in NOT_ATTRIBUTES and not text.isdigit(), (where, text)
        assert len({tuple(a) for a in g["attributes"]}) == len(g["attributes"]), where
        for subject, predicate, obj in g["relations"]:
            assert 0 <= subject < n and 0 <= obj < n and subject != obj, where
            assert predicate and predicate == " ".join(predicate.lower().split()), (where, predicate)
        assert len({tuple(r) for r in g["relations"]}) == len(g["relations"]), where


def test_gold_attributes_are_in_normal_form(gold: list[dict]) -> None:
    # gold keeps grey / gray and blond / blonde as written; everything else is already normalised.
    for g in gold:
        for _, text in g["attributes"]:
            assert text.replace("grey", "gray").replace("blonde", "blond") == normalise_attribute(text), (g["id"], text)
