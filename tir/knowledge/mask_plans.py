"""mask_plans.parquet: each caption's CLIP BPE tokens labelled with word, graph level and graph element.

Element numbering, per caption: objects are 0..O-1 in their list order in graphs.parquet, then
attributes O..O+A-1, then relations O+A..O+A+R-1 (so an element's level follows from its number and
the graph row). A token realises the element whose character span overlaps it; where spans overlap,
the narrowest span wins (ties: the higher element number). An element is *kept* when it labels a
token inside the context, *cut* when all its tokens lie beyond the cut, *hidden* when narrower
elements claim all its tokens, *unanchored* when its span covers no token (null or empty span).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tir.errors import UserError
from tir.pipeline import store
from tir.pipeline.layout import GRAPHS, MANIFEST, MASK_PLANS, require_file
from tir.progress import progress_bar

STAGE = "plan-masks"
LEVELS: tuple[str, ...] = ("none", "object", "attribute", "relation")
ELEMENT_STATES: tuple[str, ...] = ("kept", "cut", "hidden", "unanchored")
BATCH = 20_000  # captions tokenised per progress step


@dataclass
class Elements:
    """Graph elements of a batch of captions, flat: caption row, element number, level, character span."""

    row: np.ndarray
    element: np.ndarray
    level: np.ndarray
    start: np.ndarray
    end: np.ndarray


@dataclass
class Plans:
    """Flat plan columns (start and end tokens included) with per-caption offsets, and element states."""

    offsets: np.ndarray  # int64 [n + 1]
    token_ids: np.ndarray  # int32
    word_ids: np.ndarray  # int32
    level: np.ndarray  # int8
    element: np.ndarray  # int16
    n_elements: np.ndarray  # int16 per caption
    n_cut: np.ndarray  # int16 per caption
    element_states: dict[str, int]


# ----------------------------------------------------------------------------- graphs -> elements
def graph_elements(graphs: pa.Table, rows: np.ndarray) -> tuple[Elements, np.ndarray]:
    """Flatten graphs.parquet's lists; ``rows[g]`` is the caption row of graph row ``g``.

    Returns the elements and the number of elements per graph row.
    """
    counts = [pc.fill_null(pc.list_value_length(graphs.column(c)), 0).to_numpy() for c in ("objects", "attributes", "relations")]
    base = [np.zeros_like(counts[0]), counts[0], counts[0] + counts[1]]
    parts = []
    for level, (column, first) in enumerate(zip(("objects", "attributes", "relations"), base), start=1):
        lists = graphs.column(column).combine_chunks()
        parents = pc.list_parent_indices(lists).to_numpy()
        flat = pc.list_flatten(lists)
        position = np.arange(len(parents)) - np.searchsorted(parents, parents, side="left")
        parts.append((
            rows[parents],
            first[parents] + position,
            np.full(len(parents), level),
            pc.fill_null(flat.field("start"), -1).to_numpy(),
            pc.fill_null(flat.field("end"), -1).to_numpy(),
        ))
    columns = [np.concatenate([p[k] for p in parts]).astype(np.int64) for k in range(5)]
    return Elements(*columns), counts[0] + counts[1] + counts[2]


# ----------------------------------------------------------------------------- plans
def build_plans(captions: list[str], elements: Elements, tokenizer: Any, context_length: int = 77) -> Plans:
    """Plans for ``captions`` given their graph ``elements``, with a ``ClipTokenizer``."""
    if context_length < 3:
        raise UserError(f"--context-length must be at least 3 (start, one token, end), got {context_length}")
    tokens = tokenizer.encode_batch(captions)
    n = len(captions)
    per_caption = np.diff(tokens.offsets)
    caption = np.repeat(np.arange(n), per_caption)
    within = np.arange(len(tokens.ids)) - tokens.offsets[caption]
    inside = within < context_length - 2

    # token spans and element spans in one global character coordinate (captions one apart)
    lengths = np.fromiter(map(len, captions), np.int64, n)
    caption_base = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]) if n else np.zeros(0, np.int64)
    token_start = caption_base[caption] + tokens.starts
    token_end = np.maximum.accumulate(caption_base[caption] + tokens.ends)  # made monotonic for searchsorted
    start = np.clip(elements.start, 0, lengths[elements.row])
    end = np.clip(elements.end, 0, lengths[elements.row])
    valid = (elements.start >= 0) & (end > start)
    first = np.searchsorted(token_end, caption_base[elements.row] + start, side="right")
    stop = np.searchsorted(token_start, caption_base[elements.row] + end, side="left")
    n_overlap = np.where(valid, np.maximum(stop - first, 0), 0)

    # every (element, token) overlap; each token goes to its narrowest element (ties: higher number)
    owner = np.repeat(np.arange(len(n_overlap)), n_overlap)
    token = np.repeat(first, n_overlap) + np.arange(n_overlap.sum()) - np.repeat(np.cumsum(n_overlap) - n_overlap, n_overlap)
    order = np.lexsort((-elements.element[owner], (end - start)[owner], token))
    token, owner = token[order], owner[order]
    winner = np.ones(len(token), bool)
    winner[1:] = token[1:] != token[:-1]
    level = np.zeros(len(tokens.ids), np.int8)
    element = np.full(len(tokens.ids), -1, np.int16)
    level[token[winner]] = elements.level[owner[winner]]
    element[token[winner]] = elements.element[owner[winner]]

    # element states
    kept = np.zeros(len(n_overlap), bool)
    kept[owner[winner & inside[token]]] = True
    any_inside = np.zeros(len(n_overlap), bool)
    any_inside[owner[inside[token]]] = True
    cut = (n_overlap > 0) & ~any_inside
    states = {
        "kept": int(kept.sum()),
        "cut": int(cut.sum()),
        "hidden": int((any_inside & ~kept).sum()),
        "unanchored": int((n_overlap == 0).sum()),
    }

    # output: start token, the tokens inside the context, end token
    kept_count = np.minimum(per_caption, context_length - 2)
    offsets = np.concatenate([[0], np.cumsum(kept_count + 2)])
    size = int(offsets[-1])
    position = offsets[caption[inside]] + 1 + within[inside]
    token_ids = np.full(size, tokenizer.sot_id, np.int32)
    token_ids[offsets[1:] - 1] = tokenizer.eot_id
    token_ids[position] = tokens.ids[inside]
    word_ids = np.full(size, -1, np.int32)
    word_ids[position] = tokens.words[inside]
    out_level = np.zeros(size, np.int8)
    out_level[position] = level[inside]
    out_element = np.full(size, -1, np.int16)
    out_element[position] = element[inside]
    return Plans(
        offsets=offsets,
        token_ids=token_ids,
        word_ids=word_ids,
        level=out_level,
        element=out_element,
        n_elements=np.bincount(elements.row, minlength=n).astype(np.int16),
        n_cut=np.bincount(elements.row[cut], minlength=n).astype(np.int16),
        element_states=states,
    )


def plans_table(splits: pa.Array, pair_index: pa.Array, plans: Plans) -> pa.Table:
    """The mask_plans.parquet table (without provenance)."""
    offsets = pa.array(plans.offsets.astype(np.int32))

    def lists(values: np.ndarray) -> pa.Array:
        return pa.ListArray.from_arrays(offsets, pa.array(values))

    return pa.table({
        "split": splits,
        "pair_index": pair_index,
        "token_ids": lists(plans.token_ids),
        "word_ids": lists(plans.word_ids),
        "level": lists(plans.level),
        "element": lists(plans.element),
        "n_elements": pa.array(plans.n_elements),
        "n_cut": pa.array(plans.n_cut),
    })


# ----------------------------------------------------------------------------- the stage
@dataclass
class PlanResult:
    """What ``plan_masks`` did."""

    path: Path
    up_to_date: bool
    element_states: dict[str, int] | None = None
    captions_without_graph: int = 0


def plan_masks(folder: Path, dataset: str, *, context_length: int = 77, force: bool = False) -> PlanResult:
    """Build ``folder/mask_plans.parquet`` from the folder's manifest and graphs (unless fresh)."""
    from tir.knowledge.clip_tokens import TOKENIZER_NAME, ClipTokenizer

    manifest_path = require_file(folder / MANIFEST, f"tir prepare {dataset}")
    graphs_path = require_file(folder / GRAPHS, f"tir parse-graphs {dataset}")
    out = folder / MASK_PLANS
    options = {"context_length": context_length, "tokenizer": TOKENIZER_NAME}
    inputs = {"manifest": manifest_path, "graphs": graphs_path}
    if not force and store.is_fresh(out, stage=STAGE, options=options, inputs=inputs):
        return PlanResult(out, up_to_date=True)
    store.require_built_from(graphs_path, "manifest", manifest_path, f"tir parse-graphs {dataset} --manifests {folder.parent}")
    manifest = store.read_table(manifest_path, stage="prepare", columns=["split", "pair_index", "caption"])
    graphs = store.read_table(graphs_path, stage="parse-graphs")
    rows, missing = _graph_rows(manifest, graphs, graphs_path)

    tokenizer = ClipTokenizer()
    captions = manifest.column("caption").to_pylist()
    elements, _ = graph_elements(graphs, rows)
    parts: list[Plans] = []
    with progress_bar(len(captions), "plan-masks", unit="captions") as bar:
        for begin in range(0, len(captions), BATCH):
            stop = begin + BATCH
            sel = (elements.row >= begin) & (elements.row < stop)
            batch = Elements(*(getattr(elements, f)[sel] for f in ("row", "element", "level", "start", "end")))
            batch.row = batch.row - begin
            parts.append(build_plans(captions[begin:stop], batch, tokenizer, context_length))
            bar.update(len(captions[begin:stop]))
    plans = _concat(parts)
    table = plans_table(manifest.column("split"), manifest.column("pair_index"), plans)
    extra = {
        "tokenizer": {"name": tokenizer.name, "vocab_hash": tokenizer.vocab_hash, "vocab_size": tokenizer.vocab_size,
                      "sot_id": tokenizer.sot_id, "eot_id": tokenizer.eot_id, "context_length": context_length},
        "elements": plans.element_states,
        "captions_without_graph": missing,
    }
    store.write_table(table, out, stage=STAGE, options=options, inputs=inputs, extra=extra)
    return PlanResult(out, up_to_date=False, element_states=plans.element_states, captions_without_graph=missing)


def _graph_rows(manifest: pa.Table, graphs: pa.Table, graphs_path: Path) -> tuple[np.ndarray, int]:
    """The manifest row of each graph row (by split and pair_index), and how many captions have no graph."""
    import pandas as pd

    keys = pd.MultiIndex.from_arrays([manifest.column("split").to_pandas().astype(str), manifest.column("pair_index").to_pandas()])
    wanted = pd.MultiIndex.from_arrays([graphs.column("split").to_pandas().astype(str), graphs.column("pair_index").to_pandas()])
    rows = keys.get_indexer(wanted)
    if (rows < 0).any():
        raise UserError(f"{int((rows < 0).sum())} graph rows match no manifest caption; "
                        f"re-run `tir parse-graphs {graphs_path.parent.name} --manifests {graphs_path.parent.parent} --force`",
                        path=graphs_path)
    if "caption" in graphs.column_names:
        same = pc.equal(manifest.column("caption").take(pa.array(rows)), graphs.column("caption").combine_chunks())
        if not pc.all(same).as_py():
            raise UserError("graphs were parsed from other caption texts than the manifest's; re-run "
                            f"`tir parse-graphs {graphs_path.parent.name} --manifests {graphs_path.parent.parent} --force`",
                            path=graphs_path)
    return rows.astype(np.int64), len(manifest) - len(np.unique(rows))


def _concat(parts: list[Plans]) -> Plans:
    shifts = np.cumsum([0] + [int(p.offsets[-1]) for p in parts[:-1]])
    offsets = np.concatenate([[0]] + [p.offsets[1:] + s for p, s in zip(parts, shifts)])
    def join(field: str) -> np.ndarray:
        return np.concatenate([getattr(p, field) for p in parts]) if parts else np.zeros(0)

    states = {k: sum(p.element_states[k] for p in parts) for k in ELEMENT_STATES}
    return Plans(offsets, join("token_ids").astype(np.int32), join("word_ids").astype(np.int32), join("level").astype(np.int8),
                 join("element").astype(np.int16), join("n_elements").astype(np.int16), join("n_cut").astype(np.int16), states)


# ----------------------------------------------------------------------------- consumers
def require_plan_tokenizer(path: str | Path, tokenizer: Any, context_length: int) -> dict[str, Any]:
    """Refuse plans made with another tokenizer (name or vocabulary) or context length; returns provenance.

    ``tokenizer`` is the trainer's open_clip ``SimpleTokenizer`` (``open_clip.get_tokenizer(...)``).
    """
    from tir.knowledge.clip_tokens import tokenizer_name, vocabulary_hash

    provenance = store.read_provenance(path) or {}
    recorded = provenance.get("tokenizer") or {}
    if not hasattr(tokenizer, "encoder") or not hasattr(tokenizer, "bpe_ranks"):
        raise UserError(f"mask plans need open_clip's CLIP BPE tokenizer, not {type(tokenizer).__name__}", path=path)
    name, digest = tokenizer_name(tokenizer), vocabulary_hash(tokenizer)
    if (recorded.get("name"), recorded.get("vocab_hash")) != (name, digest):
        raise UserError(f"mask plans were made with tokenizer {recorded.get('name')} ({recorded.get('vocab_hash')}), "
                        f"the model uses {name} ({digest}); re-run `{rerun_command(path, context_length)}`", path=path)
    if recorded.get("context_length") != context_length:
        raise UserError(f"mask plans were cut at {recorded.get('context_length')} tokens, the model reads {context_length}; "
                        f"re-run `{rerun_command(path, context_length)}`", path=path)
    return provenance


def rerun_command(plans: Path, context_length: int) -> str:
    """The `tir plan-masks` command that rebuilds ``plans`` (``<manifests>/<DATASET>/mask_plans.parquet``)."""
    folder = Path(plans).parent
    return f"tir plan-masks {folder.name} --manifests {folder.parent} --context-length {context_length} --force"


def plan_arrays(path: str | Path, split: str, context_length: int) -> dict[str, np.ndarray]:
    """One split's plans as padded [N, context_length] arrays (token 0, word -1, level 0, element -1 as
    padding) plus ``pair_index`` [N], rows in pair_index order."""
    table = store.read_table(path, stage=STAGE)
    table = table.filter(pc.equal(table.column("split").cast(pa.string()), split))
    table = table.take(pc.sort_indices(table.column("pair_index")))
    lengths = pc.list_value_length(table.column("token_ids")).to_numpy()
    if len(lengths) and lengths.max() > context_length:
        raise UserError(f"plans hold up to {lengths.max()} tokens, more than {context_length}; "
                        f"re-run `{rerun_command(path, context_length)}`", path=path)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out: dict[str, np.ndarray] = {"pair_index": table.column("pair_index").to_numpy()}
    for name, dtype, pad in (("token_ids", np.int64, 0), ("word_ids", np.int64, -1), ("level", np.int64, 0), ("element", np.int64, -1)):
        array = np.full((len(lengths), context_length), pad, dtype)
        array[rows, cols] = pc.list_flatten(table.column(name)).to_numpy()
        out[name] = array
    return out


def summarise_plans(table: pa.Table, provenance: dict[str, Any]) -> list[str]:
    """`tir info` lines: tokenizer, tokens per caption, tokens and elements per level, elements dropped by the cut."""
    tok = provenance.get("tokenizer") or {}
    length = pc.list_value_length(table.column("token_ids")).to_numpy()
    levels = np.bincount(pc.list_flatten(table.column("level")).to_numpy(), minlength=4)
    states = provenance.get("elements") or {}
    total = max(sum(states.values()), 1)
    lines = [
        f"  tokenizer: {tok.get('name')} (vocabulary {tok.get('vocab_hash')}), context {tok.get('context_length')}",
        f"  tokens per caption (with start/end): mean {length.mean() if len(length) else 0:.1f}, "
        f"median {np.median(length) if len(length) else 0:.0f}, max {length.max() if len(length) else 0}; "
        f"{int((length == tok.get('context_length')).sum()):,} captions at the context length",
        "  tokens per level: " + ", ".join(f"{name} {count:,}" for name, count in zip(LEVELS, levels)),
        "  graph elements: " + ", ".join(f"{k} {states.get(k, 0):,} ({100 * states.get(k, 0) / total:.1f}%)" for k in ELEMENT_STATES),
        f"  captions with elements dropped by the cut: {int((table.column('n_cut').to_numpy() > 0).sum()):,}; "
        f"captions without a graph: {provenance.get('captions_without_graph', 0):,}",
    ]
    return lines
