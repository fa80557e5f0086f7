"""Read the records of a raw annotation file (a JSON list of objects).

Two readers give the same values. ``decode_fields`` is the fast common path: msgspec decodes only
the keys the caller names (``processed_tokens`` and other keys are skipped, never built) and refuses
anything unusual (not a list of objects, raw control characters in strings, lone surrogate escapes,
NaN, numbers out of range, deep nesting). ``iter_records`` is the exact path, used when msgspec
refuses: it decodes record by record with the standard library, keeps each record's JSON text (for
rejects.parquet) and turns every file-level problem into a one-line UserError that names the file,
the line/column and the record where there is one. ``record_texts`` recovers the JSON text of the
few records the fast path rejects.
"""

from __future__ import annotations

import codecs
import gc
import json
import mmap
import operator
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from tir.errors import UserError

MISSING = msgspec.UNSET  # the value of a key a record does not have

_WS = re.compile(r"[ \t\n\r]*")
_FIX = "re-download or re-extract the annotation file, or pass the right one with --annotations"


def read_text(path: Path) -> str:
    """The file's text (UTF-8, a leading BOM dropped), or a one-line UserError.

    The bytes are decoded straight from a memory map, so only the text is held in memory, not the
    bytes as well.
    """
    try:
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


def decode_fields(text: str, keys: tuple[str, ...]) -> Iterator[tuple[Any, ...]] | None:
    """Each record's values for ``keys`` (``MISSING`` where absent), or None when msgspec refuses the text.

    Other keys are skipped without being built. Where a key repeats inside a record the last value
    counts, as with the standard library. None sends the caller to ``iter_records``, which gives the
    exact error or reject for whatever msgspec refused.
    """
    fields = [(f"f{k}", Any, MISSING) for k in range(len(keys))]
    record = msgspec.defstruct("Record", fields, rename={f"f{k}": key for k, key in enumerate(keys)}, gc=False)
    was_enabled = gc.isenabled()
    gc.disable()  # nothing decoded here can form a cycle; collections would only rescan the captions lists
    try:
        records = msgspec.json.Decoder(list[record]).decode(text)
    except (msgspec.MsgspecError, RecursionError):
        return None
    finally:
        if was_enabled:
            gc.enable()
    return map(operator.attrgetter(*(name for name, _, _ in fields)), records)


def record_texts(text: str, indices: Iterable[int]) -> dict[int, str]:
    """The exact JSON text of the records at ``indices`` of a text that ``decode_fields`` accepted."""
    wanted = sorted(set(indices))
    if not wanted:
        return {}
    raws = msgspec.json.decode(text, type=list[msgspec.Raw])
    return {index: bytes(raws[index]).decode("utf-8") for index in wanted}
