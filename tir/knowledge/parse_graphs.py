"""The `tir parse-graphs` stage: manifest.parquet -> graphs.parquet (one scene graph per caption).

Captions are parsed in chunks; each finished chunk is written to a part folder beside the output so an
interrupted run resumes where it stopped. Chunks run in parallel when ``jobs > 1``: the spacy backend is loaded
once and the workers are forked from that process (each fresh process would spend seconds importing spaCy and
loading the model); other backends run in joblib's loky workers.
A run whose output is fresh (same manifest, backend and options) does nothing. ``shard=(k, n)``
parses the k-th of n contiguous row ranges into ``graphs.shard-k-of-n.parquet``; :func:`merge_shards`
joins them into graphs.parquet after checking that they cover every manifest row.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import multiprocessing
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tir.errors import UserError
from tir.knowledge.graphs import backend_identity, get_backend
from tir.knowledge.graphs.schema import graphs_table
from tir.pipeline import layout, store
from tir.progress import log, progress_bar

STAGE = "parse-graphs"
CHUNK_SIZE = 512  # captions per chunk: small enough that two workers end within a second of each other
_SHARD_RE = re.compile(r"graphs\.shard-(\d+)-of-(\d+)\.parquet$")
_backend_cache: dict[str, Any] = {}
_forked_rows: pa.Table | None = None  # a forked worker's manifest rows, inherited from the stage's process
# backends that run on numpy and thinc only: safe to fork once loaded (stanza runs torch, whose threads are not)
_FORK_BACKENDS = frozenset(("spacy",))
# container allocations between two young garbage collections while parsing (Python's default: 700): a parse
# makes many short-lived objects, and the older generations' collections, triggered every 10 young ones, walk
# every object alive; at 10,000 the collector took a fifth of its time (0.02 against 0.11 s per 2,048 captions)
_GC_YOUNG_THRESHOLD = 10_000


@dataclass
class ParseResult:
    """What a run did: the output file, how many rows it holds, and whether it was already fresh."""

    path: Path
    rows: int
    fresh: bool = False
    resumed_chunks: int = 0
    seconds: float = 0.0


def parse_shard(spec: str) -> tuple[int, int]:
    """``"K/N"`` (1 <= K <= N) -> (K, N)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise UserError(f"--shard {spec!r} is not K/N with 1 <= K <= N; write e.g. --shard 2/8")
    return int(match[1]), int(match[2])


def shard_path(folder: Path, k: int, n: int) -> Path:
    """``graphs.shard-K-of-N.parquet`` in ``folder``."""
    return folder / f"graphs.shard-{k}-of-{n}.parquet"


def shard_rows(total: int, k: int, n: int) -> tuple[int, int]:
    """The [start, stop) manifest rows of shard k of n (contiguous, sizes differ by at most one)."""
    return (k - 1) * total // n, k * total // n


def _read_manifest(manifest: Path) -> pa.Table:
    layout.require_file(manifest, "tir prepare DATASET")
    table = store.read_table(manifest, stage="prepare", columns=["split", "pair_index", "caption"])
    return table


def _loaded_backend(name: str, options: dict[str, Any]) -> Any:
    """The backend ``name`` with ``options``, loaded once per process (a forked worker inherits it)."""
    key = json.dumps([name, options], sort_keys=True, default=str)
    backend = _backend_cache.get(key)
    if backend is None:
        backend = _backend_cache[key] = get_backend(name, **options)
        # the model's objects, alive for the whole run, leave the collector's generations: its full collections
        # stop walking them, and forked workers stop copying their pages by touching them
        gc.freeze()
    return backend


def _parse_chunk(name: str, options: dict[str, Any], rows: pa.Table, out: Path) -> int:
    """Parse one chunk of manifest rows and write it to ``out`` (runs in a worker process or in-process)."""
    backend = _loaded_backend(name, options)
    captions = [c or "" for c in rows.column("caption").to_pylist()]
    unique = list(dict.fromkeys(captions))  # a caption repeated in the chunk is parsed once
    graphs_of = dict(zip(unique, backend.parse_batch(unique)))
    graphs = [graphs_of[caption] for caption in captions]
    table = graphs_table(
        [str(s) for s in rows.column("split").to_pylist()],
        rows.column("pair_index").to_pylist(),
        captions,
        graphs,
        f"{backend.name} ({backend.version})",
    )
    with store.atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return table.num_rows


def parse_graphs(
    folder: Path,
    *,
    backend: str = "spacy",
    backend_options: dict[str, Any] | None = None,
    jobs: int = 1,
    shard: tuple[int, int] | None = None,
    force: bool = False,
    chunk_size: int = CHUNK_SIZE,
    max_chunks: int | None = None,
) -> ParseResult:
    """Parse every caption of ``folder/manifest.parquet`` (or one shard of them) into graphs.

    ``backend_options`` go to the backend (spacy: model, batch_size, max_words; stanza: stanza_dir).
    ``max_chunks`` stops after that many new chunks (the output is then not written): used to test resuming.
    """
    started = time.perf_counter()
    manifest = folder / layout.MANIFEST
    layout.require_file(manifest, f"tir prepare {folder.name}")
    backend_options = {k: v for k, v in (backend_options or {}).items() if v is not None}
    options: dict[str, Any] = dict(backend_identity(backend, **backend_options))
    out = folder / layout.GRAPHS
    if shard is not None:
        options["shard"] = f"{shard[0]}/{shard[1]}"
        out = shard_path(folder, *shard)
    inputs = {"manifest": manifest}
    if not force and store.is_fresh(out, stage=STAGE, options=options, inputs=inputs):
        return ParseResult(out, pq.ParquetFile(out).metadata.num_rows, fresh=True)

    table = _read_manifest(manifest)
    if shard is not None:
        start, stop = shard_rows(table.num_rows, *shard)
        table = table.slice(start, stop - start)
    parts = _part_folder(out, options, manifest, chunk_size)
    if force and parts.exists():
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    chunks = [(k, parts / f"chunk-{k:06d}.parquet") for k in range(0, table.num_rows, chunk_size)]
    todo = [(k, path) for k, path in chunks if not path.exists()]
    resumed = len(chunks) - len(todo)
    if resumed:
        log(f"{out.name}: resuming, {resumed} of {len(chunks)} chunks already parsed")
    if max_chunks is not None:
        todo = todo[:max_chunks]
    done_rows = sum(min(chunk_size, table.num_rows - k) for k, path in chunks if path.exists())
    _run_chunks(backend, backend_options, table, todo, chunk_size, jobs, done_rows, out.name)
    missing = [path for _, path in chunks if not path.exists()]
    if missing and max_chunks is None:
        raise UserError(f"{len(missing)} parsed chunk(s) vanished during the run (first {missing[0].name}); "
                        f"run `tir parse-graphs {folder.name}` again: it parses the missing chunks", path=parts)
    if missing:
        return ParseResult(out, 0, resumed_chunks=resumed, seconds=time.perf_counter() - started)

    merged = pa.concat_tables([_read_chunk(path, folder.name) for _, path in chunks]) if chunks else graphs_table([], [], [], [], backend)
    parser = merged.column("parser")[0].as_py() if merged.num_rows else backend
    store.write_table(merged, out, stage=STAGE, options=options, inputs=inputs, extra={"parser": parser})
    shutil.rmtree(parts, ignore_errors=True)
    return ParseResult(out, merged.num_rows, resumed_chunks=resumed, seconds=time.perf_counter() - started)


def _read_chunk(path: Path, dataset: str) -> pa.Table:
    """A parsed chunk; a damaged one is a UserError saying to delete it so that a re-run parses it again."""
    try:
        return store.read_parquet(path)
    except (pa.ArrowException, OSError) as error:
        raise UserError(f"parsed chunk is damaged ({type(error).__name__}); delete it and run "
                        f"`tir parse-graphs {dataset}` again (it re-parses only that chunk)", path=path) from None


def _part_folder(out: Path, options: dict[str, Any], manifest: Path, chunk_size: int) -> Path:
    """The folder holding finished chunks of this exact run (same options, manifest content and chunk size)."""
    fp = store.fingerprint(manifest)
    key = hashlib.sha256(json.dumps([options, fp["size"], fp["sha256"] or fp["mtime_ns"], chunk_size], sort_keys=True).encode())
    prefix = f".{out.name}.parts-"
    for stale in out.parent.glob(prefix + "*"):
        if stale.name != prefix + key.hexdigest()[:16]:
            shutil.rmtree(stale, ignore_errors=True)
    return out.parent / (prefix + key.hexdigest()[:16])


def _collect_less_often() -> tuple[int, ...]:
    """Young garbage collections every :data:`_GC_YOUNG_THRESHOLD` allocations from now; the thresholds before."""
    thresholds = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, *thresholds[1:])
    return thresholds


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """:func:`_collect_less_often` meanwhile."""
    thresholds = _collect_less_often()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def _start_worker(rows: pa.Table) -> None:
    """A forked worker's start: keep the manifest rows it inherited (chunks then travel as row ranges; a pickled
    slice of a table carries the whole table) and collect garbage less often (the process only parses)."""
    global _forked_rows
    _forked_rows = rows
    _collect_less_often()


def _parse_forked_chunk(args: tuple[str, dict[str, Any], int, int, Path]) -> int:
    """:func:`_parse_chunk` on the rows [start, start + length) of the inherited manifest (``Pool.imap_unordered``)."""
    name, options, start, length, out = args
    assert _forked_rows is not None, "a forked worker starts with _start_worker"
    return _parse_chunk(name, options, _forked_rows.slice(start, length), out)


def _run_chunks(
    backend: str,
    options: dict[str, Any],
    table: pa.Table,
    todo: list[tuple[int, Path]],
    chunk_size: int,
    jobs: int,
    done_rows: int,
    label: str,
) -> None:
    if jobs > 1 and len(todo) > 1 and backend in _FORK_BACKENDS and "fork" in multiprocessing.get_all_start_methods():
        _loaded_backend(backend, options)  # loaded once, here: the forked workers start with it (no start-up each)
        work = [(backend, options, k, chunk_size, path) for k, path in todo]
        # fork: the workers inherit the model and the rows (initializer arguments are not pickled)
        with multiprocessing.get_context("fork").Pool(min(jobs, len(todo)), _start_worker, (table,)) as pool:
            with progress_bar(table.num_rows, f"parse-graphs {label}", unit="captions") as bar:
                bar.update(done_rows)
                for count in pool.imap_unordered(_parse_forked_chunk, work):
                    bar.update(count)
        return
    with progress_bar(table.num_rows, f"parse-graphs {label}", unit="captions") as bar:
        bar.update(done_rows)
        if jobs <= 1 or len(todo) <= 1:
            with _fewer_collections():
                for k, path in todo:
                    bar.update(_parse_chunk(backend, options, table.slice(k, chunk_size), path))
            return
        from joblib import Parallel, delayed

        work = (delayed(_parse_chunk)(backend, options, table.slice(k, chunk_size), path) for k, path in todo)
        for count in Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(work):
            bar.update(count)


def merge_shards(folder: Path) -> ParseResult:
    """Join ``graphs.shard-K-of-N.parquet`` into graphs.parquet, checking they cover every manifest row."""
    started = time.perf_counter()
    manifest = folder / layout.MANIFEST
    layout.require_file(manifest, f"tir prepare {folder.name}")
    found: dict[int, dict[int, Path]] = {}
    for path in folder.glob("graphs.shard-*-of-*.parquet"):
        match = _SHARD_RE.search(path.name)
        if match:
            found.setdefault(int(match[2]), {})[int(match[1])] = path
    if not found:
        raise UserError(f"no graphs.shard-K-of-N.parquet files; run `tir parse-graphs {folder.name} --shard K/N` first", path=folder)
    if len(found) > 1:
        raise UserError(f"shards of different counts N ({sorted(found)}); delete the stale ones and merge again", path=folder)
    n, shards = next(iter(found.items()))
    missing = [k for k in range(1, n + 1) if k not in shards]
    if missing:
        raise UserError(f"shards {missing} of {n} are missing; run `tir parse-graphs {folder.name} --shard K/{n}` for each", path=folder)
    options = None
    for k in range(1, n + 1):
        provenance = store.require_built_from(shards[k], "manifest", manifest, f"tir parse-graphs {folder.name} --shard {k}/{n}")
        shard_options = {key: v for key, v in provenance.get("options", {}).items() if key != "shard"}
        if options is not None and shard_options != options:
            raise UserError(f"was parsed with other options than shard 1/{n}; re-run it with the same options", path=shards[k])
        options = shard_options
    merged = pa.concat_tables([store.read_table(shards[k], stage=STAGE) for k in range(1, n + 1)])
    keys = _read_manifest(manifest).select(["split", "pair_index"])
    if merged.num_rows != keys.num_rows or not (
        merged.column("pair_index").equals(keys.column("pair_index"))
        and merged.column("split").cast(pa.string()).equals(keys.column("split").cast(pa.string()))
    ):
        raise UserError(f"the shards hold {merged.num_rows} rows but do not match the manifest's {keys.num_rows}; re-run the shards", path=folder)
    out = folder / layout.GRAPHS
    parser = merged.column("parser")[0].as_py() if merged.num_rows else ""
    store.write_table(merged, out, stage=STAGE, options=options or {}, inputs={"manifest": manifest}, extra={"parser": parser})
    return ParseResult(out, merged.num_rows, seconds=time.perf_counter() - started)
