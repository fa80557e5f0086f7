"""Score predicted scene graphs against reference graphs (docs/GRAPH_CONVENTIONS.md, "Scoring").

Graphs here are plain dicts, the format of ``tests/data/gold_graphs.jsonl`` and of ``tir synth``'s
``graphs_gt.jsonl``::

    {"objects": ["man", "shirt"], "attributes": [[1, "white"]], "relations": [[0, "wear", 1]]}

Positions in ``attributes`` and ``relations`` index into ``objects``. Each graph becomes three
multisets — object heads, (head, attribute) pairs and (subject head, predicate, object head)
triples — and precision / recall / F1 are micro-averaged over captions, with the per-caption
overlap taken as a multiset intersection.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from os import PathLike
from typing import Any, Mapping, Sequence

LEVELS: tuple[str, ...] = ("objects", "attributes", "relations")

PERSON_NOUNS = frozenset(
    "man woman lady girl boy kid male female person individual student guy gentleman child pedestrian".split()
)
_PRONOUN_DEFAULT = {
    "he": "man", "him": "man", "his": "man",
    "she": "woman", "her": "woman", "hers": "woman",
    "they": "person", "them": "person",
}  # fmt: skip
_HEAD_VARIANTS = {
    "t shirt": "t-shirt", "tshirt": "t-shirt", "t-shirts": "t-shirt", "tee shirt": "t-shirt",
    "back pack": "backpack", "hand bag": "handbag", "pony tail": "ponytail",
}  # fmt: skip
_HYPHENATED = (
    "tight fitting", "loose fitting", "button up", "button down", "cut off", "see through", "slip on",
    "thigh length", "knee length", "shoulder length", "two toned", "ankle length", "polka dot",
)  # fmt: skip
_SLEEVE = re.compile(r"^(short|long|quarter)[ -]?sleeve[sd]?$")
_COLORED = re.compile(r"^(.+?)[ -]colou?r(?:ed)?$")
_MULTI = re.compile(r"^multi[ -]?colou?r(?:ed)?$")
_SPELLING = {"grey": "gray", "blonde": "blond", "stripe": "striped", "stripes": "striped", "print": "printed"}


def _clean(text: str) -> str:
    return " ".join(str(text).lower().split())


def normalise_head(head: str) -> str:
    """Lower-case a head and unify its spelling variants (t shirt -> t-shirt, back pack -> backpack)."""
    head = _clean(head)
    return _HEAD_VARIANTS.get(head, head)


def normalise_attribute(text: str) -> str:
    """Lower-case an attribute and apply the conventions' normal forms.

    short sleeve(d) -> short-sleeved (also long, quarter); "X colored" / "X color" -> X;
    multi-color -> multi-colored; stripe -> striped; print -> printed; the hyphenated words
    (tight-fitting, knee-length, ...); grey -> gray and blonde -> blond inside any attribute.
    """
    text = _clean(text)
    for words in _HYPHENATED:
        text = text.replace(words, words.replace(" ", "-"))
    if _MULTI.match(text):
        return "multi-colored"
    sleeve = _SLEEVE.match(text)
    if sleeve:
        return f"{sleeve.group(1)}-sleeved"
    colored = _COLORED.match(text)
    if colored:
        text = colored.group(1)
    return " ".join(_SPELLING.get(word, word) for word in text.split())


def normalise_predicate(text: str) -> str:
    """Lower-case a predicate and collapse its whitespace."""
    return _clean(text)


def normalise_graph(graph: Mapping[str, Any]) -> dict[str, list]:
    """A copy of ``graph`` ready for exact matching.

    Heads, attributes and predicates are normalised, and pronoun objects (he, she, they, him, her)
    become the graph's person head: its first person noun, else man / woman / person by pronoun.
    """
    heads = [normalise_head(h) for h in graph.get("objects") or []]
    person = next((h for h in heads if h in PERSON_NOUNS), None)
    heads = [(person or _PRONOUN_DEFAULT[h]) if h in _PRONOUN_DEFAULT else h for h in heads]
    return {
        "objects": heads,
        "attributes": [[int(o), normalise_attribute(t)] for o, t in graph.get("attributes") or []],
        "relations": [[int(s), normalise_predicate(p), int(o)] for s, p, o in graph.get("relations") or []],
    }


def graph_multisets(graph: Mapping[str, Any]) -> dict[str, Counter]:
    """The three multisets of a normalised graph: heads, (head, attribute), (head, predicate, head)."""
    g = normalise_graph(graph)
    heads = g["objects"]
    return {
        "objects": Counter(heads),
        "attributes": Counter((heads[o], t) for o, t in g["attributes"]),
        "relations": Counter((heads[s], p, heads[o]) for s, p, o in g["relations"]),
    }


@dataclass(frozen=True)
class LevelScore:
    """Micro-averaged counts of one level: matched, predicted and reference items."""

    matched: int
    predicted: int
    gold: int

    @property
    def precision(self) -> float:
        """Matched / predicted (1.0 when nothing was predicted and nothing was expected)."""
        return self.matched / self.predicted if self.predicted else float(self.gold == 0)

    @property
    def recall(self) -> float:
        """Matched / reference (1.0 when nothing was expected and nothing was predicted)."""
        return self.matched / self.gold if self.gold else float(self.predicted == 0)

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def score_graphs(predicted: Sequence[Mapping[str, Any]], gold: Sequence[Mapping[str, Any]]) -> dict[str, LevelScore]:
    """Precision / recall / F1 per level of ``predicted`` against ``gold`` (same captions, same order)."""
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predicted graphs for {len(gold)} reference graphs")
    totals = {level: [0, 0, 0] for level in LEVELS}
    for pred, ref in zip(predicted, gold):
        p, g = graph_multisets(pred), graph_multisets(ref)
        for level in LEVELS:
            counts = totals[level]
            counts[0] += sum((p[level] & g[level]).values())
            counts[1] += sum(p[level].values())
            counts[2] += sum(g[level].values())
    return {level: LevelScore(*counts) for level, counts in totals.items()}


def graph_from_row(row: Mapping[str, Any]) -> dict[str, list]:
    """A graphs.parquet row (objects / attributes / relations as lists of structs) as a plain graph.

    Attributes and relations refer to objects by ``id``; the plain graph refers to them by position.
    """
    objects = list(row.get("objects") or [])
    position = {int(o["id"]): i for i, o in enumerate(objects)}
    relations = row.get("relations") or []
    return {
        "objects": [o["head"] for o in objects],
        "attributes": [[position[int(a["object"])], a["text"]] for a in row.get("attributes") or []],
        "relations": [[position[int(r["subject"])], r["predicate"], position[int(r["object"])]] for r in relations],
    }


def read_graphs(path: str | PathLike) -> list[dict[str, Any]]:
    """The records of a graphs JSON-lines file (the gold set or ``graphs_gt.jsonl``), blank lines skipped."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]

