"""Describe any tir artifact: provenance, schema, row counts, and a stage-specific summary."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pyarrow.parquet as pq

from tir.errors import UserError
from tir.pipeline.store import read_provenance, read_table

# stage -> "module:function" taking (table: pyarrow.Table, provenance: dict) and returning text lines.
# Each stage registers its own summary here; it is imported only when such a file is described.
SUMMARISERS: dict[str, str] = {
    "prepare": "tir.pipeline.prepare:summarise_manifest",
    "parse-graphs": "tir.knowledge.graph_summary:summarise_graphs",
    "plan-masks": "tir.knowledge.mask_plans:summarise_plans",
    "make-noise": "tir.knowledge.noise:summarise_noise",
}


def describe(path: str | Path) -> str:
    """A human-readable description of the artifact at ``path``."""
    p = Path(path)
    if p.suffix == ".json":
        try:
            return json.dumps(json.loads(p.read_text()), indent=2)
        except (OSError, ValueError, RecursionError) as error:
            raise UserError(f"cannot read JSON ({str(error)[:200]}); re-run the stage that wrote it", path=p) from None
    provenance = read_provenance(p)
    table = read_table(p)
    metadata = pq.ParquetFile(p).metadata
    lines = [f"{p}", f"  rows: {metadata.num_rows:,}   row groups: {metadata.num_row_groups}"]
    if provenance:
        lines.append(f"  stage: {provenance.get('stage')}   tir {provenance.get('tir_version')}   created {provenance.get('created')}")
        for key, value in sorted(provenance.get("options", {}).items()):
            lines.append(f"  option {key} = {value}")
        for name, fp in provenance.get("inputs", {}).items():
            digest = (fp.get("sha256") or "")[:12]
            lines.append(f"  input {name}: {fp.get('path')} ({fp.get('size'):,} bytes, sha256 {digest or 'not hashed'})")
    else:
        lines.append("  (no tir provenance: not made by tir)")
    lines.append("  schema:")
    lines.extend(f"    {field.name}: {field.type}" for field in table.schema)
    stage = (provenance or {}).get("stage")
    target = SUMMARISERS.get(stage or "")
    if target:
        module_name, function = target.split(":")
        summarise = getattr(importlib.import_module(module_name), function)
        lines.extend(summarise(table, provenance))
    return "\n".join(lines)
