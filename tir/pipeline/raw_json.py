"""Read the records of a raw annotation file (a JSON list of objects).

Three readers give the same values. ``decode_columns`` is the fastest: msgspec decodes every record
straight into typed columns when all records have the common shape. ``decode_fields`` is the fast
path for the rest: msgspec decodes only the keys the caller names (``processed_tokens`` and other
keys are skipped, never built). Both refuse anything unusual (not a list of objects, raw control
characters in strings, lone surrogate escapes, NaN, numbers out of range, deep nesting).
``iter_records`` is the exact path, used when msgspec refuses: it decodes record by record with the standard library, keeps each record's JSON text (for
rejects.parquet) and turns every file-level problem into a one-line UserError that names the file,
the line/column and the record where there is one. ``record_texts`` recovers the JSON text of the
few records the fast path rejects.
"""

from __future__ import annotations

import codecs
import contextlib
import gc
import json
import mmap
import operator
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
import numpy as np

from tir.errors import UserError

MISSING = msgspec.UNSET  # the value of a key a record does not have

_WS = re.compile(r"[ \t\n\r]*")
_FIX = "re-download or re-extract the annotation file, or pass the right one with --annotations"


def read_text(path: Path) -> str:
    """The file's text (UTF-8, a leading BOM dropped), or a one-line UserError.

    The bytes are decoded straight from a memory map, so only the text is held in memory, not the
    bytes as well.
    """
    with _read_errors(path):
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return ""
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
                start = len(codecs.BOM_UTF8) if view[:3] == codecs.BOM_UTF8 else 0
                data = memoryview(view)
                try:
                    return str(data[start:], "utf-8")
                finally:
                    data.release()


@contextlib.contextmanager
def annotation_content(path: Path) -> Iterator[str | memoryview]:
    """The file for the readers: a zero-copy view of its bytes when they are all ASCII, else ``read_text``.

    ASCII bytes are valid UTF-8 without a BOM, and their offsets are the text's, so the view can be
    decoded as it is (msgspec reads bytes; ``str(view, "ascii")`` gives the text). The view is valid
    only inside the ``with``.
    """
    with _read_errors(path), path.open("rb") as handle:
        view = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(handle.fileno()).st_size else None
    try:
        if view is None or not _is_ascii(view):
            yield read_text(path)
            return
        data = memoryview(view)
        try:
            yield data
        finally:
            data.release()
    finally:
        if view is not None:
            view.close()


def release_pages(data: str | memoryview) -> None:
    """Let this process's resident memory drop the pages of a view from ``annotation_content``.

    The pages stay in the kernel's page cache: reading the view again (to cut out a rejected record's
    JSON text) maps them back cheaply. Text and systems without ``madvise`` are left as they are.
    """
    if isinstance(data, memoryview) and isinstance(data.obj, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        data.obj.madvise(mmap.MADV_DONTNEED)


def _is_ascii(buffer: mmap.mmap) -> bool:
    return bool(np.frombuffer(buffer, np.uint8).max() < 0x80)


@contextlib.contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    """Opening or decoding the annotation file: each failure as a one-line UserError."""
    try:
        yield
    except FileNotFoundError:
        raise UserError(f"annotation file not found; {_FIX}", path=path) from None
    except UnicodeDecodeError as error:
        raise UserError(f"not UTF-8 text (bad byte at offset {error.start}), so not a JSON annotation file; {_FIX}", path=path) from None
    except OSError as error:
        raise UserError(f"cannot read the annotation file ({error.strerror or error}); check its permissions", path=path) from None


def _where(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    return f"line {line} column {pos - text.rfind(chr(10), 0, pos)}"


def _decode_error(path: Path, text: str, error: json.JSONDecodeError, record: int | None) -> UserError:
    inside = f" in record {record}" if record is not None else ""
    if error.pos >= len(text.rstrip()) or error.msg.startswith("Unterminated string"):
        return UserError(f"JSON ends early at {_where(text, error.pos)}{inside}: the file looks truncated; {_FIX}", path=path)
    return UserError(f"not valid JSON at {_where(text, error.pos)}{inside} ({error.msg}); {_FIX}", path=path)


def _too_deep(path: Path, record: int | None) -> UserError:
    inside = f"record {record}" if record is not None else "the top level"
    return UserError(f"{inside} nests JSON arrays/objects too deeply to be an annotation record; {_FIX}", path=path)


def iter_records(path: Path, text: str) -> Iterator[tuple[int, int, int, Any]]:
    """Yield ``(record_index, start, end, value)`` for each element of the top-level JSON list.

    ``text[start:end]`` is the element's exact JSON text. Raises UserError when the text is not JSON,
    is truncated, nests too deeply, has data after the list, or its top level is not a list.
    """
    decoder = json.JSONDecoder(strict=False)  # tolerate raw tabs/newlines inside captions
    pos = _WS.match(text).end()
    if pos == len(text):
        raise UserError(f"the file is empty, expected a JSON list of records; {_FIX}", path=path)
    if text[pos] != "[":
        try:
            value, _ = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as error:
            raise _decode_error(path, text, error, None) from None
        except RecursionError:
            raise _too_deep(path, None) from None
        kind = {dict: "object", str: "string"}.get(type(value), type(value).__name__)
        raise UserError(f"the top level is a JSON {kind}, expected a list of records; {_FIX}", path=path)
    pos = _WS.match(text, pos + 1).end()
    index = 0
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as error:
                raise _decode_error(path, text, error, index) from None
            except RecursionError:
                raise _too_deep(path, index) from None
            yield index, pos, end, value
            index += 1
            pos = _WS.match(text, end).end()
            if text.startswith(",", pos):
                pos = _WS.match(text, pos + 1).end()
                continue
            if text.startswith("]", pos):
                pos += 1
                break
            if pos >= len(text):
                raise UserError(f"JSON ends early after record {index - 1}: the file looks truncated; {_FIX}", path=path)
            raise UserError(f"not valid JSON at {_where(text, pos)} after record {index - 1} (expected ',' or ']'); {_FIX}", path=path)
    pos = _WS.match(text, pos).end()
    if pos != len(text):
        raise UserError(f"not valid JSON at {_where(text, pos)}: extra data after the list of records; {_FIX}", path=path)


@dataclass
class RecordColumns:
    """The four values prepare reads from every record, as one list per key (record order)."""

    image: list[str]
    raw_id: list[int]
    split: list[str]
    captions: list[list[str]]


_INT64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


def decode_columns(data: str | memoryview, keys: tuple[str, str, str, str]) -> RecordColumns | None:
    """The records as columns when every one is an object with the common types, else None.

    ``keys`` names the image, id, split and captions keys. Every record must hold all four: the image
    path and split as strings, the id as an integer within int64, the captions as a list of strings.
    Anything else (a missing key, an id given as text, captions given as a string ...) gives None, and
    the caller falls back to ``decode_fields``.
    """
    names = ("image", "raw_id", "split", "captions")
    record = msgspec.defstruct("TypedRecord", list(zip(names, (str, _INT64, str, list[str]))), rename=dict(zip(names, keys)), gc=False)
    records = _decode(data, list[record])
    if records is None:
        return None
    return RecordColumns(*(list(map(operator.attrgetter(name), records)) for name in names))


def decode_fields(text: str | memoryview, keys: tuple[str, ...]) -> Iterator[tuple[Any, ...]] | None:
    """Each record's values for ``keys`` (``MISSING`` where absent), or None when msgspec refuses the text.

    Other keys are skipped without being built. Where a key repeats inside a record the last value
    counts, as with the standard library. None sends the caller to ``iter_records``, which gives the
    exact error or reject for whatever msgspec refused.
    """
    fields = [(f"f{k}", Any, MISSING) for k in range(len(keys))]
    record = msgspec.defstruct("Record", fields, rename={f"f{k}": key for k, key in enumerate(keys)}, gc=False)
    records = _decode(text, list[record])
    if records is None:
        return None
    return map(operator.attrgetter(*(name for name, _, _ in fields)), records)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for the body, then enabled again if it was.

    Decoded records are hundreds of thousands of containers (the captions lists) that form no cycle:
    any collection while they live walks them all for nothing (the first one after a CUHK-PEDES-sized
    decode took 18 ms of CPU).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _decode(data: str | memoryview, type_: Any) -> Any:
    """``data`` decoded as ``type_`` by msgspec, or None when msgspec refuses it."""
    with gc_paused():
        try:
            return msgspec.json.Decoder(type_).decode(data)
        except (msgspec.MsgspecError, RecursionError):
            return None


def record_texts(text: str | memoryview, indices: Iterable[int]) -> dict[int, str]:
    """The exact JSON text of the records at ``indices`` of a text that msgspec accepted."""
    wanted = sorted(set(indices))
    if not wanted:
        return {}
    raws = msgspec.json.decode(text, type=list[msgspec.Raw])
    return {index: bytes(raws[index]).decode("utf-8") for index in wanted}
