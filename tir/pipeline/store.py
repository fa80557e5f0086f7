"""The artifact store: atomic writes, provenance in Parquet metadata, freshness checks.

Every artifact carries, under the schema-metadata key ``tir``, a JSON object::

    {"tir_version": ..., "stage": ..., "options": {...}, "inputs": {name: fingerprint}, "created": ...}

A fingerprint is ``{"path", "size", "mtime_ns", "sha256"}`` (the hash only for files up to
``HASH_LIMIT`` bytes). An output is *fresh* when it exists, was made by the same stage, tir
version and options, and every input still matches its fingerprint (same size and mtime, or
same content hash when the mtime moved but the bytes did not).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import glob
import hashlib
import json
import mmap
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tir import __version__
from tir.errors import StaleArtifactError, UserError

METADATA_KEY = b"tir"
HASH_LIMIT = 512 * 1024 * 1024  # hash content of inputs up to 512 MiB; above that size+mtime only


# ----------------------------------------------------------------------------- atomic writes
def write_error(error: OSError, target: str | os.PathLike) -> UserError:
    """A failed write as one line naming ``target`` and what to do about it."""
    code = error.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        fix = "the disk is full; free some space or write elsewhere"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "the folder is not writable; fix its permissions or choose another output folder"
    elif code in (errno.ENOTDIR, errno.EEXIST):
        fix = "a file stands where a folder is needed; remove it or choose another output folder"
    elif code == errno.EISDIR:
        fix = "a folder stands where the file goes; remove it or choose another output path"
    else:
        fix = "check the output folder"
    return UserError(f"cannot write ({error.strerror or error}); {fix}", path=target)


def _umask() -> int:
    """The process umask, read without changing it where Linux reports it (no window for other threads)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left untouched; a failed write
    (full disk, read-only folder, a file where the folder should be) is a one-line UserError.
    The file gets the mode a plain ``open`` would give it (0666 less the umask), not mkstemp's 0600.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
    except OSError as error:
        raise write_error(error, target) from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR):
            raise write_error(error, target) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def stage_lock(folder: str | os.PathLike, stage: str) -> Iterator[None]:
    """Hold ``<folder>/.<stage>.lock`` while a stage writes there; a second writer gets a one-line UserError.

    The lock (``flock``) ends with the process, so a killed run never leaves a stale lock behind.
    A folder this call created is removed again when the stage wrote nothing into it.
    """
    import fcntl

    directory = Path(folder)
    lock = directory / f".{stage}.lock"
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = lock.open("a")
    except OSError as error:
        raise write_error(error, directory) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another `tir {stage}` is writing to this folder; wait for it to finish "
                            "(two at once would mix their outputs)", path=directory) from None
        yield
    finally:
        handle.close()
        if created and [p.name for p in directory.iterdir()] == [lock.name]:
            lock.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                directory.rmdir()


def remove_stale_temps(folder: str | os.PathLike, names: tuple[str, ...]) -> int:
    """Delete the temporary files that killed writes of ``names`` left in ``folder``; returns bytes freed.

    Call it only under ``stage_lock``: then no live writer of these names is using them.
    """
    freed = 0
    for name in names:
        for tmp in Path(folder).glob(f".{glob.escape(name)}.*.tmp"):
            with contextlib.suppress(OSError):
                size = tmp.stat().st_size
                tmp.unlink()
                freed += size
    return freed


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


# ----------------------------------------------------------------------------- fingerprints
def _sha256(path: Path) -> str:
    """The file's SHA-256, hashed from a memory map in one call that releases the GIL throughout (read
    block by block, a hashing thread needs the GIL back for every block and stalls behind whatever holds it,
    e.g. a long decode); files that cannot be mapped are read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        try:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
                digest.update(view)
        except (OSError, ValueError):  # empty files, and files that cannot be mapped
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Size, mtime and (for files up to HASH_LIMIT) the SHA-256 of ``path``."""
    p = Path(path)
    stat = p.stat()
    return {
        "path": str(p.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": _sha256(p) if stat.st_size <= HASH_LIMIT else None,
    }


def fingerprint_matches(recorded: Mapping[str, Any], path: str | os.PathLike) -> bool:
    """True when ``path`` still has the content that ``recorded`` describes."""
    p = Path(path)
    if not p.exists():
        return False
    stat = p.stat()
    if stat.st_size != recorded.get("size"):
        return False
    if stat.st_mtime_ns == recorded.get("mtime_ns"):
        return True
    expected = recorded.get("sha256")
    return expected is not None and stat.st_size <= HASH_LIMIT and _sha256(p) == expected


# ----------------------------------------------------------------------------- provenance
def make_provenance(stage: str, options: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The provenance record for an artifact of ``stage`` built with ``options`` from ``inputs``.

    An input is a path (fingerprinted now) or a fingerprint taken earlier with ``fingerprint``
    (e.g. before a long read, so that the record describes the bytes that were read).
    """
    return {
        "tir_version": __version__,
        "stage": stage,
        "options": _jsonable(options),
        "inputs": {
            name: dict(source) if isinstance(source, Mapping) else fingerprint(source)
            for name, source in inputs.items()
        },
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _jsonable(options: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(options), default=str, sort_keys=True))


def write_table(
    table: pa.Table,
    path: str | os.PathLike,
    *,
    stage: str,
    options: Mapping[str, Any],
    inputs: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    compression: str = "zstd",
    plain_columns: tuple[str, ...] = (),
    dictionary_columns: tuple[str, ...] | None = None,
) -> Path:
    """Write ``table`` to ``path`` atomically with provenance (and optional ``extra`` fields) attached.

    ``inputs`` maps names to paths or to fingerprints taken earlier (see ``make_provenance``).
    ``plain_columns`` are written as they are: no dictionary encoding, no min/max statistics, no
    compression. For columns of nearly unique text (captions) a dictionary only costs time, then is
    abandoned, and nobody filters on their minimum and maximum; compressing them was the largest cost of
    prepare's write (Snappy: four times the time of writing them uncompressed, for 2.7x fewer bytes).
    ``dictionary_columns``, when given, are the only columns dictionary-encoded: for columns of mostly
    distinct values (row numbers, ids, paths) the writer builds a dictionary, abandons it and falls back,
    which costs time and bytes.
    """
    provenance = make_provenance(stage, options, inputs)
    provenance["columns"] = {field.name: _type_name(field.type) for field in table.schema}
    if extra:
        provenance.update(_jsonable(extra))
    metadata = dict(table.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(provenance).encode()
    table = table.replace_schema_metadata(metadata)
    with atomic_path(path) as tmp:
        encoded = [name for name in table.column_names if name not in plain_columns] if plain_columns else True
        dictionary = encoded if dictionary_columns is None else [name for name in dictionary_columns if name not in plain_columns]
        codecs = {name: "none" if name in plain_columns else compression for name in table.column_names}
        pq.write_table(table, tmp, compression=codecs, use_dictionary=dictionary, write_statistics=encoded)
    return Path(path)


def read_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance stored in a Parquet artifact, or None when it has none."""
    p = Path(path)
    if not p.exists():
        raise UserError("file not found; check the path or run the stage that makes it", path=p)
    try:
        metadata = pq.read_schema(p).metadata or {}
    except (pa.ArrowException, OSError) as error:
        raise UserError(f"not a readable Parquet file ({_first_line(error)}); re-run the stage that makes it", path=p) from None
    raw = metadata.get(METADATA_KEY)
    if not raw:
        return None
    try:
        provenance = json.loads(raw)
    except (ValueError, RecursionError):
        provenance = None
    if not isinstance(provenance, dict):
        raise UserError("its tir provenance is damaged; re-run the stage that makes it", path=p)
    return provenance


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def _type_name(kind: pa.DataType) -> str:
    """A column type as text, list item names dropped (Parquet renames ``item`` to ``element``)."""
    return _LIST_ITEM.sub("list<", str(kind))


_LIST_ITEM = re.compile(r"list<\w+: ")


def _schema_changes(schema: pa.Schema, recorded: Mapping[str, str]) -> list[str]:
    """How ``schema`` differs from the column types recorded when the artifact was written."""
    actual = {field.name: _type_name(field.type) for field in schema}
    changes = [f"column {name} is missing" for name in recorded if name not in actual]
    changes += [f"column {name} is {actual[name]}, not {kind}" for name, kind in recorded.items()
                if name in actual and actual[name] != kind]
    return changes


def read_table(path: str | os.PathLike, *, stage: str | None = None, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet artifact, checking (when ``stage`` is given) that the stage made it and that its
    columns are those the stage wrote; a damaged file is a one-line UserError naming the stage to re-run."""
    p = Path(path)
    provenance = read_provenance(p)
    rerun = f"`tir {stage}`" if stage else "the stage that makes it"
    if stage is not None and (provenance is None or provenance.get("stage") != stage):
        found = provenance.get("stage") if provenance else "no tir provenance"
        raise UserError(f"expected an artifact of `tir {stage}`, found {found}; re-run `tir {stage}`", path=p)
    try:
        changes = _schema_changes(pq.read_schema(p), (provenance or {}).get("columns") or {})
        if changes:
            raise UserError(f"was edited after {rerun} wrote it ({'; '.join(changes)}); re-run {rerun} --force", path=p)
        return read_parquet(p, columns=columns)
    except (pa.ArrowException, OSError) as error:
        raise UserError(f"is damaged ({_first_line(error)}); re-run {rerun} --force", path=p) from None


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file as a table (``columns`` in that order), as ``pq.read_table`` reads it but without
    ``pyarrow.dataset``, whose import pulls in pandas (0.7 s of a process's start-up); a missing column is an
    ``ArrowInvalid``."""
    with pq.ParquetFile(path) as file:
        absent = [name for name in columns or () if name not in file.schema_arrow.names]
        if absent:
            raise pa.ArrowInvalid(f"no column {absent[0]!r}")
        return file.read(columns=columns)


def is_fresh(
    path: str | os.PathLike,
    *,
    stage: str,
    options: Mapping[str, Any],
    inputs: Mapping[str, str | os.PathLike],
) -> bool:
    """True when ``path`` exists and was built by ``stage`` with ``options`` from unchanged ``inputs``."""
    p = Path(path)
    if not p.exists():
        return False
    try:
        provenance = read_provenance(p)
    except UserError:
        return False
    if not provenance or provenance.get("stage") != stage or provenance.get("tir_version") != __version__:
        return False
    if provenance.get("options") != _jsonable(options):
        return False
    recorded = provenance.get("inputs", {})
    if set(recorded) != set(inputs):
        return False
    return all(fingerprint_matches(recorded[name], inputs[name]) for name in inputs)


def require_built_from(
    artifact: str | os.PathLike, input_name: str, upstream: str | os.PathLike, rerun: str
) -> dict[str, Any]:
    """Refuse ``artifact`` unless its recorded input ``input_name`` matches ``upstream`` as it is now.

    ``rerun`` names the command to re-run (e.g. ``"tir parse-graphs CUHK-PEDES"``). Returns the
    artifact's provenance.
    """
    provenance = read_provenance(artifact)
    recorded = (provenance or {}).get("inputs", {}).get(input_name)
    if recorded is None or not fingerprint_matches(recorded, upstream):
        raise StaleArtifactError(
            f"was built from a different {Path(upstream).name} than the one at {upstream}; run `{rerun} --force`",
            path=artifact,
        )
    return provenance or {}
