"""``tir serve``: the search page and a JSON API over one run and its index (FastAPI, optional extra).

Routes: ``/`` (the page; ``?q=...&k=...`` shows results), ``/api/search?q=...&k=...`` (JSON), and
``/image/<path>``, which serves only image paths listed in the index, from the index's gallery folder.
Sentences are at most MAX_SENTENCE_CHARS characters and k at most MAX_TOP. Requests that arrive while
a search runs wait and then go together (``BatchedSearches``): one text-encoder batch and one pass over
the gallery for all of them.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tir.errors import UserError
from tir.search.page import render_page
from tir.search.searcher import MAX_SENTENCE_CHARS, MAX_TOP, Searcher, SearchResult, check_query

MAX_BATCH = 32  # sentences searched together at most


def require_fastapi() -> None:
    """Fail with the install line when the `serve` extra is missing."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UserError("tir serve needs FastAPI and uvicorn; install them with `pip install 'tir[serve]'`") from None


def gallery_file(root: Path, allowed: frozenset[str], path: str) -> Path | None:
    """The file of an index image path, or None unless ``path`` is one of the ``allowed`` images inside ``root``."""
    if path not in allowed:
        return None
    root = root.resolve()
    file = (root / path).resolve()
    return file if file.is_relative_to(root) and file.is_file() else None


class BatchedSearches:
    """One worker thread owns the searcher; ``search`` queues a sentence and waits for its result. The worker
    takes every queued sentence (up to ``max_batch``) into one ``Searcher.search`` call at the largest k asked
    and gives each its own top k (a prefix: evaluation's order is total)."""

    def __init__(self, searcher: Searcher, max_batch: int = MAX_BATCH, start: bool = True) -> None:
        self.searcher, self.max_batch = searcher, max_batch
        self.pending: queue.Queue[tuple[str, int, Future]] = queue.Queue()
        self.batch_sizes: list[int] = []
        self.worker = threading.Thread(target=self._work, name="tir-search", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        """Start the worker (a test may queue requests first to see them batched)."""
        self.worker.start()

    def search(self, sentence: str, k: int) -> SearchResult:
        """The top ``k`` of one sentence, searched together with whatever else is queued."""
        check_query([sentence], k)
        done: Future = Future()
        self.pending.put((sentence, k, done))
        return done.result()

    def _work(self) -> None:
        while True:
            batch = [self.pending.get()]
            while len(batch) < self.max_batch and not self.pending.empty():
                batch.append(self.pending.get_nowait())
            self.batch_sizes.append(len(batch))
            try:
                results = self.searcher.search([sentence for sentence, _, _ in batch], max(k for _, k, _ in batch))
            except Exception as error:  # noqa: BLE001 - handed to every waiting request
                for _, _, done in batch:
                    done.set_exception(error)
                continue
            for (_, k, done), result in zip(batch, results):
                result.hits = result.hits[:k]
                done.set_result(result)


def create_app(searcher: Searcher, title: str):
    """The FastAPI application serving ``searcher``."""
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import FileResponse, HTMLResponse

    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    allowed = frozenset(searcher.index.image_paths)
    searches = BatchedSearches(searcher)  # its thread alone uses the model

    def run(q: str, k: int) -> list:
        try:
            return [searches.search(q, k)]
        except UserError as error:
            raise HTTPException(status_code=400, detail=str(error)) from None

    @app.get("/api/search")
    def api_search(q: str = Query(..., min_length=1, max_length=MAX_SENTENCE_CHARS),
                   k: int = Query(10, ge=1, le=MAX_TOP)) -> dict[str, Any]:
        return run(q, k)[0].to_dict()

    @app.get("/", response_class=HTMLResponse)
    def page(q: str = Query("", max_length=MAX_SENTENCE_CHARS), k: int = Query(10, ge=1, le=MAX_TOP)) -> str:
        results = run(q, k) if q.strip() else []
        return render_page(results, lambda path: "/image/" + quote(path), title, q, k)

    @app.get("/image/{path:path}")
    def image(path: str) -> FileResponse:
        file = gallery_file(searcher.index.root, allowed, path)
        if file is None:
            raise HTTPException(status_code=404, detail="not an image of this index")
        return FileResponse(file)

    return app


def make_server(searcher: Searcher, host: str, port: int, title: str):
    """A uvicorn Server for the app (``server.run()`` blocks; ``server.should_exit = True`` stops it)."""
    import uvicorn

    config = uvicorn.Config(create_app(searcher, title), host=host, port=port, log_level="warning", access_log=False)
    return uvicorn.Server(config)
