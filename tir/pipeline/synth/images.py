"""Draw and save many images, in parallel (joblib) when there is enough work to pay for it."""

from __future__ import annotations

import os
from pathlib import Path

from tir.pipeline.synth.appearance import Identity, Jitter
from tir.pipeline.synth.draw import render
from tir.progress import progress_bar

Task = tuple[Path, Identity, Jitter]
PARALLEL_FROM = 500  # images; below this one process is faster than starting workers
CHUNK = 128


def save(path: Path, identity: Identity, jitter: Jitter, size: tuple[int, int]) -> None:
    """Render one image and write it (PNG or JPEG by the path's suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = render(identity, jitter, size)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, "JPEG", quality=92)
    else:
        image.save(path, "PNG", compress_level=3)


def _save_chunk(tasks: list[Task], size: tuple[int, int]) -> int:
    for path, identity, jitter in tasks:
        save(path, identity, jitter, size)
    return len(tasks)


def resolve_jobs(jobs: int, count: int) -> int:
    """``jobs`` as given, or for 0: every core when ``count`` images justify workers, else 1."""
    if jobs > 0:
        return jobs
    return (os.cpu_count() or 1) if count > PARALLEL_FROM else 1


def draw_all(tasks: list[Task], size: tuple[int, int], jobs: int = 0, progress: bool = True) -> None:
    """Render and save every task; output does not depend on ``jobs``."""
    chunks = [tasks[start:start + CHUNK] for start in range(0, len(tasks), CHUNK)]
    workers = resolve_jobs(jobs, len(tasks))
    with progress_bar(len(tasks), "drawing", unit="img", disable=not progress) as bar:
        if workers == 1:
            for chunk in chunks:
                bar.update(_save_chunk(chunk, size))
            return
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=workers, return_as="generator_unordered")
        for done in parallel(delayed(_save_chunk)(chunk, size) for chunk in chunks):
            bar.update(done)
