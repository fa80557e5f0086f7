"""Read image sizes from file headers (Pillow reads the size without decoding pixels), in parallel."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from tir.progress import progress_bar

# below this many images a worker pool costs more than it saves
PARALLEL_MIN = 2_000


class Header(NamedTuple):
    """An image's size, or why it could not be read (``problem`` is a rejects reason code)."""

    width: int | None
    height: int | None
    problem: str | None = None
    detail: str = ""


def read_header(path: Path) -> Header:
    """The size of the image at ``path`` from its header, or ``missing_image`` / ``unreadable_image``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        return Header(None, None, "missing_image", "image file not found")
    except Image.DecompressionBombError:
        return Header(None, None, "unreadable_image", "the header claims a size past Pillow's decompression-bomb limit")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error) as error:
        return Header(None, None, "unreadable_image", f"cannot read the image header ({type(error).__name__})")
    return Header(width, height)


def _read_chunk(paths: Sequence[Path]) -> list[Header]:
    return [read_header(path) for path in paths]


def read_headers(paths: Sequence[Path], jobs: int = 1, chunk: int = 500) -> list[Header]:
    """Headers of ``paths`` in order, read by ``jobs`` worker processes (joblib) with a progress bar."""
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    results: list[Header] = []
    with progress_bar(len(paths), "reading image headers", unit="img") as bar:
        if jobs <= 1 or len(paths) < PARALLEL_MIN:
            parts = map(_read_chunk, chunks)
        else:
            from joblib import Parallel, delayed

            parts = Parallel(n_jobs=jobs, return_as="generator")(delayed(_read_chunk)(part) for part in chunks)
        for part in parts:
            results.extend(part)
            bar.update(len(part))
    return results
