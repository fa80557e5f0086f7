"""Where a run's index files live and which one a command means."""

from __future__ import annotations

from pathlib import Path

from tir.errors import UserError


def default_index_path(run: Path, source: str) -> Path:
    """``<run>/index-<source>.parquet`` (source e.g. ``CUHK-PEDES-test`` or an image folder's name)."""
    folder = run if run.is_dir() else run.parent
    return folder / f"index-{source}.parquet"


def find_index(run: Path, given: Path | None) -> Path:
    """``given``, else the run folder's only ``index-*.parquet``; a one-line UserError otherwise."""
    if given is not None:
        if not given.is_file():
            raise UserError("index file not found; build it with `tir index RUN`", path=given)
        return given
    folder = run if run.is_dir() else run.parent
    found = sorted(folder.glob("index-*.parquet"))
    if not found:
        raise UserError(f"no index in this run; build one with `tir index {run}` (or pass --index FILE)", path=folder)
    if len(found) > 1:
        raise UserError(f"{len(found)} indexes in this run ({', '.join(p.name for p in found)}); choose one with --index", path=folder)
    return found[0]
