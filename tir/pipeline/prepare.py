"""`tir prepare`: a raw annotation file -> manifest.parquet, rejects.parquet and stats.json.

One manifest row per kept (image, caption) pair, in the raw file's order. Every record or caption
that cannot become a row goes to rejects.parquet with a reason code, a message and its raw JSON, so
that kept + rejected captions always equals the captions in the raw file.
"""

from __future__ import annotations

import itertools
import json
import os
import posixpath
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tir.errors import UserError
from tir.pipeline import layout, store
from tir.pipeline.datasets import REGISTRY, SPLITS, DatasetSpec, get_spec
from tir.pipeline.image_headers import read_headers
from tir.pipeline.raw_csv import read_csv_as_json
from tir.pipeline.raw_json import (MISSING, RecordColumns, annotation_content, decode_columns, decode_fields, gc_paused, iter_records,
                                   record_texts, release_pages)

STAGE = "prepare"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_CAPTIONS = 2**15 - 1  # caption_index is int16
_ASCII_INT = re.compile(r"[-+]?[0-9]+")
_UNUSUAL_PATH = r"^$|^[ ./]|[^ -~]|\\|/\.|//"  # the paths _clean_path may change or refuse (RE2 syntax)

MANIFEST_SCHEMA = pa.schema(
    [
        ("pair_index", pa.int64()),
        ("split", pa.dictionary(pa.int32(), pa.string())),
        ("raw_id", pa.int64()),
        ("pid", pa.int32()),
        ("image_index", pa.int32()),
        ("image_path", pa.string()),
        ("caption_index", pa.int16()),
        ("caption", pa.string()),
        ("caption_raw", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
    ]
)
REJECTS_SCHEMA = pa.schema(
    [
        ("raw_index", pa.int64()),  # the record's position in the raw JSON list
        ("caption_index", pa.int16()),  # null when the whole record is rejected
        ("split", pa.string()),  # the split the record would have gone to, when known
        ("reason", pa.string()),
        ("message", pa.string()),
        ("captions", pa.int32()),  # how many raw captions this reject accounts for
        ("raw_json", pa.string()),  # the record's exact JSON text
    ]
)
# the manifest columns of few distinct values, written with a Parquet dictionary (the others hold mostly distinct values)
DICTIONARY_COLUMNS = ("split", "caption_index", "width", "height")
# reason code -> meaning (README and tests use this list)
REASONS: dict[str, str] = {
    "not_a_record": "the list element is not a JSON object",
    "missing_key": "the record lacks the image key, id, split or captions",
    "bad_id": "the id is not an integer of ASCII digits that fits in 64 bits",
    "bad_path": "the image path is not a string of valid Unicode, is absolute, or escapes the image root with ..",
    "duplicate_image": "an earlier record already uses this image path (the message names it)",
    "bad_captions": "captions is neither a list nor a string",
    "too_many_captions": f"the record has more than {MAX_CAPTIONS:,} captions (caption_index is int16)",
    "bad_text": "one caption is not valid Unicode (a lone surrogate \\u escape)",
    "no_captions": "captions is an empty list",
    "bad_caption": "one caption is not a string",
    "empty_caption": "one caption is empty or only whitespace",
    "missing_image": "the image file does not exist (images checked)",
    "unreadable_image": "the image header cannot be read (images checked)",
}


@dataclass
class PrepareResult:
    """What `prepare_dataset` did: where the artifacts are and their stats."""

    out: Path
    manifest: Path
    rejects: Path
    stats_file: Path
    stats: dict[str, Any]
    up_to_date: bool = False

    @property
    def warnings(self) -> list[str]:
        return list(self.stats.get("warnings", []))


@dataclass
class _Parsed:
    """Records that passed the checks done while reading, as columns, plus every reject.

    Record columns (one entry per kept record) and caption columns (one entry per kept caption,
    ``n_captions`` of them per record, in order) are kept apart so that the manifest is built by
    repeating record values, not row by row.
    """

    raw_index: list[int] = field(default_factory=list)
    split: list[str] = field(default_factory=list)
    raw_id: list[int] = field(default_factory=list)
    path: list[str] | pa.Array = field(default_factory=list)  # an Arrow array from _read_columns
    n_captions: list[int] = field(default_factory=list)
    spans: list[tuple[int, int] | None] = field(default_factory=list)  # each record's JSON text, when known
    caption_index: list[int] | pa.Array = field(default_factory=list)  # an Arrow array from _read_columns
    caption_raw: list[str] | pa.Array = field(default_factory=list)  # a list while reading, then an Arrow array
    caption: pa.Array | None = None  # whitespace-normalised captions, set at the end of reading
    rejects: list[tuple[Any, ...]] = field(default_factory=list)
    records: int = 0
    captions_total: int = 0
    quirks: Counter = field(default_factory=Counter)
    unknown_splits: Counter = field(default_factory=Counter)
    decoded: RecordColumns | None = None  # the decoder's Python objects, kept to be freed while the manifest is written

    def release(self) -> list[list[Any]]:
        """Hand over the per-record Python lists (the decoded columns and the record lists), leaving empty ones."""
        decoded = [] if self.decoded is None else [self.decoded.image, self.decoded.raw_id, self.decoded.split, self.decoded.captions]
        lists = [*decoded, self.raw_index, self.split, self.raw_id, self.path, self.n_captions, self.spans]
        self.decoded = None
        self.raw_index, self.split, self.raw_id, self.path, self.n_captions, self.spans = [], [], [], [], [], []
        return [items for items in lists if isinstance(items, list)]

    def reject(self, index: int, caption: int | None, split: str | None, reason: str, message: str, n: int,
               span: tuple[int, int] | None) -> None:
        """Record a reject; its raw JSON (the ``span`` of the text, found later when None) is filled in by ``_fill_raw_json``."""
        self.rejects.append((index, caption, split, reason, message, n, span))


# ----------------------------------------------------------------------------- reading
def _clean_path(value: object) -> tuple[str | None, str]:
    """A raw image path as a POSIX path relative to the image root, or (None, why not)."""
    if not isinstance(value, str) or not value.strip():
        return None, f"image path {json.dumps(value)} is not a non-empty string"
    if "\\" not in value and not value.startswith((".", "/")) and "/." not in value and "//" not in value:
        return value, ""
    path = value.replace("\\", "/")
    if path.startswith("/") or path[1:2] == ":":
        return None, f"image path {value!r} is absolute; paths must be relative to the image root"
    path = posixpath.normpath(path)
    if path in (".", "..") or path.startswith("../"):
        return None, f"image path {value!r} escapes the image root"
    return path, ""


def _as_id(value: object) -> int | None:
    """An int64 id from an int or a string of ASCII digits, else None (``str.isdigit`` would take ``²``)."""
    if isinstance(value, str) and _ASCII_INT.fullmatch(value.strip()):
        value = int(value)
    if type(value) is int and INT64_MIN <= value <= INT64_MAX:
        return value
    return None


def _is_unicode(text: str) -> bool:
    """False for strings holding a lone surrogate (from a JSON \\ud800-style escape), which Arrow cannot store."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


Span = tuple[int, int] | None  # a record's (start, end) in the text; None: find it only if it is rejected


def _exact_records(path: Path, text: str, keys: tuple[str, ...]) -> Iterator[tuple[int, tuple[Any, ...] | str, Span, bool]]:
    """The standard-library reader's records as ``(index, values or JSON kind, span, has \\u escapes)``."""
    for index, start, end, record in iter_records(path, text):
        if type(record) is not dict:
            yield index, "list" if isinstance(record, list) else type(record).__name__, (start, end), False
            continue
        yield index, tuple(record.get(key, MISSING) for key in keys), (start, end), text.find("\\u", start, end) != -1


def _records(path: Path, data: str | memoryview, keys: tuple[str, ...]) -> Iterator[tuple[int, tuple[Any, ...] | str, Span, bool]]:
    """Every record as ``(index, values of keys or the JSON kind of a non-object, span, check Unicode)``.

    msgspec's fast path when it accepts the text: its strings are always valid Unicode (it refuses
    lone surrogate escapes), so nothing needs checking; otherwise the exact standard-library path.
    """
    fast = decode_fields(data, keys)
    if fast is None:
        return _exact_records(path, data if isinstance(data, str) else str(data, "ascii"), keys)
    return zip(itertools.count(), fast, itertools.repeat(None), itertools.repeat(False))


def _read(spec: DatasetSpec, path: Path, data: str | memoryview) -> _Parsed:
    """Check every record of ``data`` (the file's text, or its ASCII bytes); keep the good ones in order, reject the rest.

    Records that all have the common types are checked column by column (``_read_columns``); any
    other file record by record (``_read_records``). Both give the same result.
    """
    columns = decode_columns(data, (spec.image_key, spec.id_key, spec.split_key, spec.captions_key))
    if columns is None:
        return _read_records(spec, path, data)
    release_pages(data)  # decoded: the file's pages need not stay resident while the columns are checked
    return _read_columns(spec, columns)


def _read_records(spec: DatasetSpec, path: Path, data: str | memoryview) -> _Parsed:
    """``_read`` one record at a time, for records of any shape."""
    parsed = _Parsed()
    key, id_key, captions_key = spec.image_key, spec.id_key, spec.captions_key
    required = (key, id_key, spec.split_key, captions_key)
    known = {name: name for name in spec.splits}
    first_use: dict[str, int] = {}
    caption_index, caption_raw = parsed.caption_index, parsed.caption_raw
    for index, values, span, escapes in _records(path, data, required):
        parsed.records += 1
        if type(values) is str:
            parsed.reject(index, None, None, "not_a_record", f"record {index} is a JSON {values}, not an object", 0, span)
            continue
        raw_image, raw_id, raw_split, captions = values
        n_raw = 0 if captions is MISSING else len(captions) if type(captions) is list else 1
        parsed.captions_total += n_raw
        if MISSING in values:
            absent = ", ".join(name for name, value in zip(required, values) if value is MISSING)
            parsed.reject(index, None, None, "missing_key", f"record {index} has no {absent}", n_raw, span)
            continue
        split = known.get(raw_split) if type(raw_split) is str else None
        if split is None:
            split = spec.fallback_split
            parsed.unknown_splits[raw_split if isinstance(raw_split, str) else json.dumps(raw_split)] += 1
        if type(raw_id) is not int or not INT64_MIN <= raw_id <= INT64_MAX:
            raw_id = _as_id(raw_id)
            if raw_id is None:
                message = f"record {index} has {id_key} {json.dumps(values[1])[:40]}, not an integer of ASCII digits within int64"
                parsed.reject(index, None, split, "bad_id", message, n_raw, span)
                continue
            parsed.quirks["ids_as_text"] += 1
        image, problem = _clean_path(raw_image)
        if image is not None and escapes and not _is_unicode(image):
            image, problem = None, f"image path {json.dumps(raw_image)} holds a lone surrogate, not valid Unicode"
        if image is None:
            parsed.reject(index, None, split, "bad_path", f"record {index}: {problem}", n_raw, span)
            continue
        first = first_use.setdefault(image, index)
        if first != index:
            message = f"record {index} uses image {image}, already used by record {first}"
            parsed.reject(index, None, split, "duplicate_image", message, n_raw, span)
            continue
        if type(captions) is str:
            parsed.quirks["captions_as_string"] += 1
            captions = [captions]
        elif type(captions) is not list:
            message = f"record {index} has {captions_key} of type {type(captions).__name__}, expected a list of strings"
            parsed.reject(index, None, split, "bad_captions", message, n_raw, span)
            continue
        if not captions:
            parsed.reject(index, None, split, "no_captions", f"record {index} has an empty {captions_key} list", 0, span)
            continue
        if len(captions) > MAX_CAPTIONS:
            message = f"record {index} has {len(captions):,} captions, more than the {MAX_CAPTIONS:,} one record may hold"
            parsed.reject(index, None, split, "too_many_captions", message, n_raw, span)
            continue
        kept = 0
        for position, caption in enumerate(captions):
            if type(caption) is not str:
                message = f"record {index} caption {position} is {json.dumps(caption)[:40]}, not a string"
                parsed.reject(index, position, split, "bad_caption", message, 1, span)
                continue
            if escapes and not _is_unicode(caption):
                message = f"record {index} caption {position} holds a lone surrogate escape, not valid Unicode"
                parsed.reject(index, position, split, "bad_text", message, 1, span)
                continue
            if not caption.strip():  # str.strip and str.split agree on what whitespace is
                message = f"record {index} caption {position} is empty or only whitespace"
                parsed.reject(index, position, split, "empty_caption", message, 1, span)
                continue
            caption_index.append(position)
            caption_raw.append(caption)
            kept += 1
        if kept:
            parsed.raw_index.append(index)
            parsed.split.append(split)
            parsed.raw_id.append(raw_id)
            parsed.path.append(image)
            parsed.n_captions.append(kept)
            parsed.spans.append(span)
    parsed.caption_raw = pa.array(caption_raw, pa.string())
    caption_raw.clear()
    parsed.caption, changed, _ = _normalise(parsed.caption_raw)  # nothing normalises to "": empty captions were rejected
    parsed.quirks["captions_whitespace_normalised"] += changed
    return parsed


def _read_columns(spec: DatasetSpec, columns: RecordColumns) -> _Parsed:
    """``_read`` for records that all have the common types (``decode_columns``): the same checks, over whole columns.

    Such records can only be rejected for their path, a repeated image, their number of captions or
    an empty caption; split values and paths are checked in Python only where they are unusual.
    """
    parsed = _Parsed()
    records = parsed.records = len(columns.image)
    counts = np.fromiter(map(len, columns.captions), np.int64, records)
    parsed.captions_total = int(counts.sum())
    split = _split_names(spec, columns.split, parsed.unknown_splits)
    image, image_column, problems = _clean_paths(columns.image)
    usable = np.ones(records, bool)
    for index, problem in problems.items():
        parsed.reject(index, None, split[index], "bad_path", f"record {index}: {problem}", int(counts[index]), None)
        usable[index] = False
    for index, first in _repeated_images(image, usable):
        message = f"record {index} uses image {image[index]}, already used by record {first}"
        parsed.reject(index, None, split[index], "duplicate_image", message, int(counts[index]), None)
        usable[index] = False
    for index in np.flatnonzero(usable & (counts == 0)).tolist():
        parsed.reject(index, None, split[index], "no_captions", f"record {index} has an empty {spec.captions_key} list", 0, None)
    for index in np.flatnonzero(usable & (counts > MAX_CAPTIONS)).tolist():
        message = f"record {index} has {counts[index]:,} captions, more than the {MAX_CAPTIONS:,} one record may hold"
        parsed.reject(index, None, split[index], "too_many_captions", message, int(counts[index]), None)
    usable &= (counts > 0) & (counts <= MAX_CAPTIONS)

    nested = pa.array(columns.captions, pa.list_(pa.string()))  # one conversion, no flat Python list
    raw = (nested if usable.all() else nested.filter(pa.array(usable))).flatten()
    del nested
    per_record = counts[usable]
    record = np.repeat(np.flatnonzero(usable), per_record)  # the record of each caption
    position = np.arange(len(record)) - np.repeat(np.cumsum(per_record) - per_record, per_record)
    normal, changed, empty = _normalise(raw)
    parsed.quirks["captions_whitespace_normalised"] += changed
    for index, caption in zip(record[empty].tolist(), position[empty].tolist()):
        parsed.reject(index, caption, split[index], "empty_caption", f"record {index} caption {caption} is empty or only whitespace", 1, None)
    if len(empty):
        keep = np.ones(len(record), bool)
        keep[empty] = False
        mask = pa.array(keep)
        raw, normal, record, position = raw.filter(mask), normal.filter(mask), record[keep], position[keep]
    parsed.rejects.sort(key=lambda row: (row[0], -1 if row[1] is None else row[1]))  # the order _read_records gives

    kept_counts = np.bincount(record, minlength=records)
    kept = np.flatnonzero(kept_counts).tolist()
    parsed.raw_index = kept
    if len(kept) == records:  # the common case: every record keeps a caption
        parsed.split, parsed.raw_id, parsed.path = split, columns.raw_id, image_column
    else:
        parsed.split = [split[index] for index in kept]
        parsed.raw_id = [columns.raw_id[index] for index in kept]
        parsed.path = image_column.take(pa.array(kept, pa.int64()))
    parsed.n_captions = kept_counts[kept].tolist()
    parsed.spans = [None] * len(kept)
    parsed.caption_index = pa.array(position.astype(np.int16))
    parsed.caption_raw, parsed.caption = raw, normal
    parsed.decoded = columns
    return parsed


def _split_names(spec: DatasetSpec, values: list[str], unknown: Counter) -> list[str]:
    """Each record's split: its value when the dataset has that split, else the fallback split (counted in ``unknown``)."""
    known = set(spec.splits)
    if set(values) <= known:
        return values
    unknown.update(value for value in values if value not in known)
    return [value if value in known else spec.fallback_split for value in values]


def _clean_paths(values: list[str]) -> tuple[list[str | None], pa.Array, dict[int, str]]:
    """``_clean_path`` of every value (None where refused), as a list and as an Arrow array, and the
    problem of each refused one, by position."""
    column = pa.array(values, pa.string())
    unusual = np.flatnonzero(pc.match_substring_regex(column, _UNUSUAL_PATH).to_numpy(zero_copy_only=False))
    if not len(unusual):
        return values, column, {}
    paths: list[str | None] = list(values)
    problems = {}
    for index in unusual.tolist():
        paths[index], problem = _clean_path(values[index])
        if paths[index] is None:
            problems[index] = problem
    return paths, pa.array(paths, pa.string()), problems


def _repeated_images(paths: list[str | None], usable: np.ndarray) -> list[tuple[int, int]]:
    """``(record, first record)`` for each usable record whose path an earlier usable record already has."""
    if usable.all():
        indices, candidates = range(len(paths)), paths
    else:
        indices = np.flatnonzero(usable).tolist()
        candidates = [paths[index] for index in indices]
    if len(set(candidates)) == len(indices):  # the common case; a set is built in a quarter of a dict's time
        return []
    first = dict(zip(reversed(candidates), reversed(indices)))  # the earliest record of each path wins
    return [(index, first[path]) for path, index in zip(candidates, indices) if first[path] != index]


def _needs_normalising(raw: pa.Array, block: int = 1 << 18) -> np.ndarray:
    """Positions of the captions that ``" ".join(c.split())`` would change or might change.

    A caption of printable ASCII (bytes 0x20-0x7e) has no whitespace but the space, so it is already
    normal unless it is empty, starts or ends with a space or holds two in a row; any other byte
    (control or non-ASCII) sends the caption to Python. Scanned in blocks of the string data small
    enough to stay in a core's cache through the passes (4x faster than blocks of 4 MiB).
    """
    if len(raw) == 0:
        return np.zeros(0, np.int64)
    offsets = np.frombuffer(raw.buffers()[1], np.int32)[raw.offset:raw.offset + len(raw) + 1]
    data = np.frombuffer(raw.buffers()[2] or b"", np.uint8)
    starts, ends = offsets[:-1], offsets[1:]
    filled = np.flatnonzero(ends > starts)
    edges = (data[starts[filled]] == 32) | (data[ends[filled] - 1] == 32)
    flagged = [np.flatnonzero(ends == starts), filled[edges]]
    end = int(offsets[-1])
    for first in range(int(offsets[0]), end, block):
        last = min(first + block, end)
        chunk = data[first:last]
        odd = (chunk - np.uint8(0x20)) > 0x5E  # wraps around below 0x20: control bytes and bytes above 0x7e
        space = data[first:min(last + 1, end)] == 32  # also the pair that starts at the block's last byte
        odd[:len(space) - 1] |= space[:-1] & space[1:]
        flagged.append(np.searchsorted(offsets, np.flatnonzero(odd) + first, side="right") - 1)
    return np.unique(np.concatenate(flagged))


def _collapse_whitespace(text: str) -> str:
    """``" ".join(text.split())``; a stripped text of printable ASCII without two spaces in a row
    (a caption with a trailing newline, the common case) is already that, and is found without splitting."""
    stripped = text.strip()
    if stripped.isascii() and stripped.isprintable() and "  " not in stripped:
        return stripped
    return " ".join(text.split())


def _normalise(raw: pa.Array | pa.ChunkedArray) -> tuple[pa.Array | pa.ChunkedArray, int, np.ndarray]:
    """``raw`` whitespace-normalised (``" ".join(c.split())``), how many non-empty captions that changed,
    and the positions of the captions it leaves empty.

    Only captions that may change go through Python; the others (nearly all) are shared with ``raw``.
    """
    normal_chunks, changed_total, empty, offset = [], 0, [], 0
    for chunk in raw.chunks if isinstance(raw, pa.ChunkedArray) else [raw]:
        rows = _needs_normalising(chunk)
        before = chunk.take(pa.array(rows, pa.int64())).to_pylist()
        after = [_collapse_whitespace(text) for text in before]
        changed = [k for k, (old, new) in enumerate(zip(before, after)) if old != new and new]
        empty.append(rows[[k for k, new in enumerate(after) if not new]] + offset)
        if changed:
            mask = np.zeros(len(chunk), bool)
            mask[rows[changed]] = True
            chunk = pc.replace_with_mask(chunk, pa.array(mask), pa.array([after[k] for k in changed], pa.string()))
            changed_total += len(changed)
        normal_chunks.append(chunk)
        offset += len(chunk)
    normal = pa.chunked_array(normal_chunks, pa.string()) if isinstance(raw, pa.ChunkedArray) else normal_chunks[0]
    return normal, changed_total, np.concatenate(empty).astype(np.int64)


def _fill_raw_json(parsed: _Parsed, data: str | memoryview) -> None:
    """Replace each reject's span by its record's exact JSON text (looked up once for fast-path rejects)."""
    unknown = record_texts(data, (row[0] for row in parsed.rejects if row[6] is None))
    text = (lambda start, end: data[start:end]) if isinstance(data, str) else (lambda start, end: str(data[start:end], "ascii"))
    parsed.rejects = [(*row[:6], unknown[row[0]] if row[6] is None else text(*row[6])) for row in parsed.rejects]


# ----------------------------------------------------------------------------- images
def _check_images(parsed: _Parsed, image_root: Path, jobs: int) -> list[tuple[int, int] | None]:
    """Image sizes for the kept records; records whose image is missing or unreadable are rejected (None)."""
    paths = parsed.path.to_pylist() if isinstance(parsed.path, pa.Array) else parsed.path
    headers = read_headers([image_root / p for p in paths], jobs=jobs)
    sizes: list[tuple[int, int] | None] = []
    for k, header in enumerate(headers):
        if header.problem is None:
            sizes.append((header.width, header.height))  # type: ignore[arg-type]
            continue
        index = parsed.raw_index[k]
        message = f"record {index}: {header.detail}: {image_root.name}/{paths[k]}"
        parsed.reject(index, None, parsed.split[k], header.problem, message, parsed.n_captions[k], parsed.spans[k])
        sizes.append(None)
    return sizes


# ----------------------------------------------------------------------------- tables
def _rank_within(groups: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions share its group (0-based counter per group)."""
    rank = np.zeros(len(groups), np.int64)
    for group in np.unique(groups):
        where = np.flatnonzero(groups == group)
        rank[where] = np.arange(len(where))
    return rank


def _first_seen_ids(groups: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Contiguous ids 0..n-1 within each group, numbered in order of first appearance."""
    out = np.zeros(len(ids), np.int64)
    for group in np.unique(groups):
        where = np.flatnonzero(groups == group)
        _, first, inverse = np.unique(ids[where], return_index=True, return_inverse=True)
        order = np.empty(len(first), np.int64)
        order[np.argsort(first, kind="stable")] = np.arange(len(first))
        out[where] = order[inverse.reshape(-1)]
    return out


def _kept(values: list | pa.Array, type_: pa.DataType, keep: np.ndarray) -> pa.Array:
    """``values`` where ``keep``, as an Arrow array; a Python list is emptied to free its memory."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        array = values
    else:
        array = pa.array(values, type_)
        values.clear()
    return array if keep.all() else array.filter(pa.array(keep))


def _manifest(parsed: _Parsed, sizes: list[tuple[int, int] | None] | None, dictionary: list[str]) -> tuple[pa.Table, dict]:
    """The manifest table in raw order, and ids / images / captions per split (empties ``parsed``'s lists)."""
    code = {name: i for i, name in enumerate(dictionary)}
    splits = np.array([code[s] for s in parsed.split], np.int32)
    counts_per_record = np.array(parsed.n_captions, np.int64)
    raw_id = np.array(parsed.raw_id, np.int64)
    keep = np.array([size is not None for size in sizes], bool) if sizes is not None else np.ones(len(splits), bool)
    kept = np.flatnonzero(keep)
    splits, counts_per_record, raw_id = splits[kept], counts_per_record[kept], raw_id[kept]
    row_record = np.repeat(np.arange(len(kept)), counts_per_record)  # kept-record number of each row
    row_split = splits[row_record]
    image_index = _rank_within(splits)
    pid = _first_seen_ids(splits, raw_id)
    caption_keep = np.repeat(keep, np.array(parsed.n_captions, np.int64))
    if sizes is not None:
        width = pa.array(np.array([s[0] for s in sizes if s is not None], np.int32)[row_record])
        height = pa.array(np.array([s[1] for s in sizes if s is not None], np.int32)[row_record])
    else:
        width = height = pa.nulls(len(row_record), pa.int32())
    columns = {
        "pair_index": pa.array(_rank_within(row_split)),
        "split": pa.DictionaryArray.from_arrays(pa.array(row_split), pa.array(dictionary, pa.string())),
        "raw_id": pa.array(raw_id[row_record]),
        "pid": pa.array(pid[row_record].astype(np.int32)),
        "image_index": pa.array(image_index[row_record].astype(np.int32)),
        "image_path": _kept(parsed.path, pa.string(), keep).take(pa.array(row_record)),
        "caption_index": _kept(parsed.caption_index, pa.int16(), caption_keep),
        "caption": _kept(parsed.caption, pa.string(), caption_keep),
        "caption_raw": _kept(parsed.caption_raw, pa.string(), caption_keep),
        "width": width,
        "height": height,
    }
    table = pa.Table.from_arrays([columns[name] for name in MANIFEST_SCHEMA.names], schema=MANIFEST_SCHEMA)
    counts = {}
    for name, c in code.items():
        mine = splits == c
        counts[name] = {"ids": len(np.unique(raw_id[mine])), "images": int(mine.sum()), "captions": int(counts_per_record[mine].sum())}
    return table, counts


def _rejects(parsed: _Parsed) -> pa.Table:
    parsed.rejects.sort(key=lambda row: (row[0], -1 if row[1] is None else row[1]))
    columns = list(zip(*parsed.rejects)) if parsed.rejects else [[] for _ in REJECTS_SCHEMA]
    return pa.Table.from_arrays([pa.array(list(c), f.type) for c, f in zip(columns, REJECTS_SCHEMA)], schema=REJECTS_SCHEMA)


def _warnings(spec: DatasetSpec, parsed: _Parsed, counts: dict) -> list[str]:
    warnings = []
    if parsed.unknown_splits:
        values = ", ".join(f"{value!r} x{n:,}" for value, n in parsed.unknown_splits.most_common())
        known = " / ".join(spec.splits)
        warnings.append(f"split values other than {known} were mapped to {spec.fallback_split} ({spec.split_rule}): {values}")
    if parsed.quirks["captions_as_string"]:
        warnings.append(f"{parsed.quirks['captions_as_string']:,} records give captions as a string; each was kept as one caption")
    differences = []
    for split, published in spec.published.items():
        got = counts.get(split, {})
        for kind, expected in zip(("ids", "images", "captions"), published):
            if got.get(kind, 0) != expected:
                differences.append(f"{split} {kind} {got.get(kind, 0):,} (published {expected:,})")
    if differences:
        warnings.append(f"counts differ from the published {spec.name} figures: " + "; ".join(differences))
    return warnings


# ----------------------------------------------------------------------------- the stage
@contextmanager
def _freed_meanwhile(lists: list[list[Any]], piece: int = 4096) -> Iterator[None]:
    """Empty ``lists`` (holding the last references to their items) in a second thread while the body runs.

    Meant for a Parquet write, which releases the GIL: freeing the records a CUHK-PEDES-sized file
    decodes into (about 300,000 Python objects) takes some 20 ms, which then overlap the write. Freeing
    holds the GIL, so the thread frees ``piece`` items at a time and gives the GIL back in between:
    emptied in one call, the thread held it from its start to the end, and the body waited that long.
    """
    def free() -> None:
        for items in lists:
            while items:
                del items[-piece:]
                time.sleep(0)  # gives the GIL back
        lists.clear()

    freer = threading.Thread(target=free, name="tir-prepare-free")
    freer.start()
    try:
        yield
    finally:
        freer.join()


def find_annotations(spec: DatasetSpec, root: Path, annotations: Path | None) -> Path:
    """``annotations`` if given, else the first of the dataset's known file names found in ``root``."""
    if annotations is not None:
        if not annotations.is_file():
            raise UserError("annotation file not found; check the --annotations path", path=annotations)
        return annotations
    if not root.is_dir():
        raise UserError(f"dataset root not found; pass the folder holding {spec.annotation_files[0]} and imgs/ as --root", path=root)
    for name in spec.annotation_files:
        if (root / name).is_file():
            return root / name
    looked = ", ".join(spec.annotation_files)
    raise UserError(f"no {spec.name} annotation file here (looked for {looked}); put it there or pass --annotations FILE", path=root)


def _nothing_kept(spec: DatasetSpec, source: Path, parsed: _Parsed) -> UserError:
    """The error for an annotation file none of whose records became a manifest row."""
    if not parsed.records:
        return UserError("holds no records, so the manifest would be empty; pass the right file with --annotations", path=source)
    reasons = Counter(row[3] for row in parsed.rejects)
    reason, count = reasons.most_common(1)[0]
    first = next(row for row in parsed.rejects if row[3] == reason)
    detail = f"{count:,} of {parsed.records:,} records: {reason} (e.g. {first[4]})"
    fix = ("pass --format custom with --image-key/--id-key/--split-key/--captions-key naming your keys"
           if reason == "missing_key" else "fix the records (see README, Datasets) or pass the right file")
    return UserError(f"no record could be kept, so the manifest would be empty: {detail}; {fix}", path=source)


def _read_stats(path: Path) -> dict[str, Any] | None:
    """stats.json as written by prepare, or None when it is damaged (the outputs are then rebuilt)."""
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return stats if isinstance(stats, dict) and isinstance(stats.get("splits"), dict) else None


def dataset_root(spec: DatasetSpec, root: Path) -> Path:
    """``root`` itself, or ``root/<DATASET>`` when ``root`` is the folder holding the dataset folder
    (the layout the reference repositories document: ``data/CUHK-PEDES/reid_raw.json``)."""
    if root.is_dir() and not any((root / name).is_file() for name in spec.annotation_files):
        for child in (root / spec.name, *sorted(root.iterdir())):
            if child.is_dir() and child.name.lower() == spec.name.lower():
                return child
    return root


def prepare_dataset(
    dataset: str,
    root: str | Path,
    annotations: str | Path | None = None,
    out: str | Path | None = None,
    check_images: bool = True,
    jobs: int | None = None,
    force: bool = False,
    spec: DatasetSpec | None = None,
) -> PrepareResult:
    """Turn a dataset's raw annotation file into manifest.parquet, rejects.parquet and stats.json.

    ``root`` holds the annotation file and ``imgs/`` (or holds that folder, named like the dataset);
    ``annotations`` overrides where the file is.
    ``out`` defaults to ``data_manifests/<DATASET>``. With ``check_images`` every image header is read
    (``jobs`` processes) for width/height, and records whose image is missing or unreadable are
    rejected. Does nothing when the outputs are fresh, unless ``force``. ``spec`` (``custom_spec``)
    reads a user's own dataset: JSON records under other key names, or a CSV with one caption per row.

    The three outputs are one unit: written under a lock on ``out`` (a second prepare into the same
    folder is refused), tagged with one id and fresh only together; temporary files that killed runs
    left there are removed.
    """
    spec = spec or get_spec(dataset)
    root = dataset_root(spec, Path(root))
    source = find_annotations(spec, root, Path(annotations) if annotations is not None else None)
    out_dir = Path(out) if out is not None else layout.dataset_dir(spec.name)
    with store.stage_lock(out_dir, STAGE), gc_paused():  # the decoded records are freed before collections resume
        store.remove_stale_temps(out_dir, OUTPUTS)
        return _prepare_locked(spec, root, source, out_dir, check_images, jobs, force)


OUTPUTS = (layout.MANIFEST, layout.REJECTS, layout.STATS)


def _fresh_unit(paths: tuple[Path, ...], options: dict[str, Any], inputs: dict[str, Path]) -> dict[str, Any] | None:
    """The stats of fresh outputs that were written together (one ``unit`` id in all three), else None."""
    manifest, rejects, stats_file = paths
    if not (rejects.exists() and stats_file.exists()) or not store.is_fresh(manifest, stage=STAGE, options=options, inputs=inputs):
        return None
    stats = _read_stats(stats_file)
    try:
        units = {(store.read_provenance(path) or {}).get("unit") for path in (manifest, rejects)}
    except UserError:
        return None
    return stats if stats is not None and units == {stats.get("unit")} and None not in units else None


def _prepare_locked(spec: DatasetSpec, root: Path, source: Path, out_dir: Path, check_images: bool,
                    jobs: int | None, force: bool) -> PrepareResult:
    paths = tuple(out_dir / name for name in OUTPUTS)
    options = {"dataset": spec.name, "root": str(root.resolve()), "check_images": bool(check_images)}
    if spec.name not in REGISTRY:
        options["keys"] = [spec.image_key, spec.id_key, spec.split_key, spec.captions_key]
    inputs = {"annotations": source}
    stats = None if force else _fresh_unit(paths, options, inputs)
    if stats is not None:
        return PrepareResult(out_dir, *paths, stats=stats, up_to_date=True)
    image_root = root / spec.image_dir
    if check_images and not image_root.is_dir():
        raise UserError(f"image folder not found; put the {spec.name} images there or pass --no-check-images", path=image_root)

    with ThreadPoolExecutor(max_workers=1) as hasher:
        fingerprint = hasher.submit(store.fingerprint, source)  # hashed while the file is decoded: hashlib releases the GIL
        with nullcontext(read_csv_as_json(source, spec)) if source.suffix.lower() == ".csv" else annotation_content(source) as data:
            parsed = _read(spec, source, data)
            sizes = _check_images(parsed, image_root, jobs or os.cpu_count() or 1) if check_images else None
            _fill_raw_json(parsed, data)
        source_fingerprint = fingerprint.result()
    dictionary = [s for s in SPLITS if s in spec.splits or s == spec.fallback_split]
    manifest, counts = _manifest(parsed, sizes, dictionary)
    if manifest.num_rows == 0:
        raise _nothing_kept(spec, source, parsed)
    rejects = _rejects(parsed)
    rejected = Counter()
    for row in parsed.rejects:
        rejected[row[3], "rows"] += 1
        rejected[row[3], "captions"] += row[5]
    unit = uuid.uuid4().hex  # the three outputs of this run carry it; outputs of two runs never match
    stats = {
        "dataset": spec.name,
        "annotations": str(source),
        "images_checked": bool(check_images),
        "raw": {"records": parsed.records, "captions": parsed.captions_total},
        "splits": counts,
        "kept_captions": manifest.num_rows,
        "rejected_captions": sum(row[5] for row in parsed.rejects),
        "rejects": {r: {"rows": rejected[r, "rows"], "captions": rejected[r, "captions"]} for r in REASONS if rejected[r, "rows"]},
        "quirks": {**dict(parsed.quirks), "unknown_split_values": dict(parsed.unknown_splits)},
        "published": {s: dict(zip(("ids", "images", "captions"), v)) for s, v in spec.published.items()},
        "warnings": _warnings(spec, parsed, counts),
        "unit": unit,
    }
    # the fingerprint taken while reading goes into both tables (hashed once, not once per table);
    # the manifest is written last: an interrupted run leaves units that do not match, so it is rebuilt
    recorded = {"annotations": source_fingerprint}
    store.write_table(rejects, paths[1], stage=STAGE, options=options, inputs=recorded, extra={"unit": unit})
    store.write_json_atomic(paths[2], stats)
    extra = {"stats": {"splits": counts, "raw": stats["raw"]}, "unit": unit}
    with _freed_meanwhile(parsed.release()):
        store.write_table(manifest, paths[0], stage=STAGE, options=options, inputs=recorded, extra=extra,
                          plain_columns=("caption", "caption_raw"), dictionary_columns=DICTIONARY_COLUMNS)
    return PrepareResult(out_dir, *paths, stats=stats)


# ----------------------------------------------------------------------------- reporting
def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [[f"{v:,}" if isinstance(v, int) else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]


def format_summary(stats: dict[str, Any]) -> str:
    """The end-of-run table: ids / images / captions per split, then rejects by reason."""
    splits = stats["splits"]
    rows = [[s, c["ids"], c["images"], c["captions"]] for s, c in splits.items()]
    rows.append(["total", sum(c["ids"] for c in splits.values()), sum(c["images"] for c in splits.values()), stats["kept_captions"]])
    lines = [f"{stats['dataset']}: {stats['raw']['records']:,} records, {stats['raw']['captions']:,} captions in {stats['annotations']}"]
    lines += _table(["split", "ids", "images", "captions"], rows)
    if stats["rejects"]:
        reasons = [[r, v["rows"], v["captions"]] for r, v in stats["rejects"].items()]
        lines += ["", *_table(["rejected", "rows", "captions"], reasons)]
    else:
        lines.append("no rejects")
    return "\n".join(lines)


def summarise_manifest(table: pa.Table, provenance: dict[str, Any]) -> list[str]:
    """`tir info` lines for a manifest (ids / images / captions per split) or its rejects (rows per reason)."""
    if "reason" in table.column_names:
        counts = table.group_by("reason").aggregate([("reason", "count"), ("captions", "sum")])
        rows = [[r, n, c] for r, n, c in zip(*(counts.column(k).to_pylist() for k in ("reason", "reason_count", "captions_sum")))]
        return ["  rejects:", *("    " + line for line in _table(["reason", "rows", "captions"], rows))]
    grouped = table.group_by("split").aggregate(
        [("pid", "count_distinct"), ("image_index", "count_distinct"), ("pair_index", "count")]
    )
    order = {s: i for i, s in enumerate(SPLITS)}
    columns = ("split", "pid_count_distinct", "image_index_count_distinct", "pair_index_count")
    rows = sorted((list(row) for row in zip(*(grouped.column(c).to_pylist() for c in columns))), key=lambda r: order.get(r[0], 9))
    checked = "read from image headers" if pc.count(table.column("width")).as_py() else "not checked"
    dataset = (provenance or {}).get("options", {}).get("dataset", "?")
    return [f"  {dataset} manifest (image sizes {checked}):", *("    " + line for line in _table(["split", "ids", "images", "captions"], rows))]
