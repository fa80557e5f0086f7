"""The scene graph of one caption, and its Arrow form in graphs.parquet.

Objects are numbered from 0 in order of first mention; attributes and relations refer to them by id.
``start``/``end`` are character offsets into the caption (``caption[start:end]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class Object:
    """A thing in the picture: the person, a garment, a body part, an item."""

    id: int
    text: str  # the words as written (e.g. "t shirt")
    head: str  # the normalised head lemma (e.g. "t-shirt")
    start: int
    end: int


@dataclass(frozen=True)
class Attribute:
    """A property of one object: colour, pattern, material, length, state."""

    object: int
    text: str  # normalised (e.g. "short-sleeved" for "short sleeve")
    start: int
    end: int


@dataclass(frozen=True)
class Relation:
    """``subject --predicate--> object`` (predicate a verb lemma, a preposition or verb + preposition)."""

    subject: int
    predicate: str
    object: int
    start: int
    end: int


@dataclass
class Graph:
    """Objects, attributes and relations of one caption; ``truncated`` when only a prefix was parsed."""

    objects: list[Object] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    truncated: bool = False

    def heads(self) -> list[str]:
        """Object heads in id order."""
        return [o.head for o in self.objects]

    def attribute_pairs(self) -> list[tuple[str, str]]:
        """(object head, attribute text) pairs."""
        heads = self.heads()
        return [(heads[a.object], a.text) for a in self.attributes]

    def triples(self) -> list[tuple[str, str, str]]:
        """(subject head, predicate, object head) triples."""
        heads = self.heads()
        return [(heads[r.subject], r.predicate, heads[r.object]) for r in self.relations]

    def to_row(self) -> dict[str, Any]:
        """The graph as the nested Python values of one graphs.parquet row."""
        return {
            "objects": [o.__dict__ for o in self.objects],
            "attributes": [a.__dict__ for a in self.attributes],
            "relations": [r.__dict__ for r in self.relations],
            "truncated": self.truncated,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Graph":
        """The inverse of :meth:`to_row` (accepts a row read back from Parquet)."""
        return cls(
            [Object(**o) for o in row["objects"] or []],
            [Attribute(**a) for a in row["attributes"] or []],
            [Relation(**r) for r in row["relations"] or []],
            bool(row.get("truncated", False)),
        )


OBJECT_TYPE = pa.struct(
    [("id", pa.int16()), ("text", pa.string()), ("head", pa.string()), ("start", pa.int32()), ("end", pa.int32())]
)
ATTRIBUTE_TYPE = pa.struct([("object", pa.int16()), ("text", pa.string()), ("start", pa.int32()), ("end", pa.int32())])
RELATION_TYPE = pa.struct(
    [
        ("subject", pa.int16()),
        ("predicate", pa.string()),
        ("object", pa.int16()),
        ("start", pa.int32()),
        ("end", pa.int32()),
    ]
)
GRAPHS_SCHEMA = pa.schema(
    [
        ("split", pa.dictionary(pa.int8(), pa.string())),
        ("pair_index", pa.int64()),
        ("caption", pa.string()),
        ("objects", pa.list_(OBJECT_TYPE)),
        ("attributes", pa.list_(ATTRIBUTE_TYPE)),
        ("relations", pa.list_(RELATION_TYPE)),
        ("truncated", pa.bool_()),
        ("parser", pa.dictionary(pa.int8(), pa.string())),
    ]
)


def graphs_table(splits: list[str], pair_indices: list[int], captions: list[str], graphs: list[Graph], parser: str) -> pa.Table:
    """A graphs.parquet table (without provenance) for parallel lists of keys, captions and graphs."""
    rows = [g.to_row() for g in graphs]
    return pa.table(
        {
            "split": pa.array(splits, pa.string()).dictionary_encode().cast(GRAPHS_SCHEMA.field("split").type),
            "pair_index": pa.array(pair_indices, pa.int64()),
            "caption": pa.array(captions, pa.string()),
            "objects": pa.array([r["objects"] for r in rows], GRAPHS_SCHEMA.field("objects").type),
            "attributes": pa.array([r["attributes"] for r in rows], GRAPHS_SCHEMA.field("attributes").type),
            "relations": pa.array([r["relations"] for r in rows], GRAPHS_SCHEMA.field("relations").type),
            "truncated": pa.array([r["truncated"] for r in rows], pa.bool_()),
            "parser": pa.array([parser] * len(rows), pa.string()).dictionary_encode().cast(GRAPHS_SCHEMA.field("parser").type),
        },
        schema=GRAPHS_SCHEMA,
    )
