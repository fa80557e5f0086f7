"""`tir info graphs.parquet`: per-level counts, the most frequent items, empty and truncated graphs."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

TOP = 10


def _top(values: list[Any], k: int = TOP) -> str:
    return ", ".join(f"{v} {n:,}" for v, n in Counter(values).most_common(k)) or "-"


def summarise_graphs(table: pa.Table, provenance: dict[str, Any] | None) -> list[str]:
    """Text lines describing a graphs.parquet table."""
    rows = table.num_rows
    lines = [f"  parser: {(provenance or {}).get('parser', '?')}"]
    if rows == 0:
        return lines + ["  no graphs"]
    counts = {level: pc.list_value_length(table.column(level)).fill_null(0) for level in ("objects", "attributes", "relations")}
    for level, lengths in counts.items():
        total = pc.sum(lengths).as_py() or 0
        lines.append(f"  {level}: {total:,} ({total / rows:.2f} per caption)")
    heads = pc.list_flatten(table.column("objects")).combine_chunks()
    head_of = heads.field("head").to_pylist() if len(heads) else []
    lines.append(f"  top objects: {_top(head_of)}")
    attributes = pc.list_flatten(table.column("attributes")).combine_chunks()
    lines.append(f"  top attributes: {_top(attributes.field('text').to_pylist() if len(attributes) else [])}")
    relations = pc.list_flatten(table.column("relations")).combine_chunks()
    lines.append(f"  top predicates: {_top(relations.field('predicate').to_pylist() if len(relations) else [])}")
    empty_captions = pc.sum(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(table.column("caption").fill_null(""))), 0)).as_py() or 0
    no_objects = pc.sum(pc.equal(counts["objects"], 0)).as_py() or 0
    no_relations = pc.sum(pc.equal(counts["relations"], 0)).as_py() or 0
    truncated = pc.sum(table.column("truncated").cast(pa.int64())).as_py() if "truncated" in table.column_names else 0
    lines.append(
        f"  empty graphs: {no_objects:,} (of which empty captions {empty_captions:,});"
        f" without relations: {no_relations:,}; truncated (parsed in part): {truncated or 0:,}"
    )
    return lines
