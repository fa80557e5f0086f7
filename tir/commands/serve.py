"""`tir serve RUN`: a local search page and JSON API over the run's index."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option("--index", "index_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Index file from `tir index` [default: the run folder's only index-*.parquet].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; the default is reachable from this machine only.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N.")
@click.option("--rerank-k", type=click.IntRange(min=0), default=128, show_default=True,
              help="Methods with a matching head (cfack): re-score each sentence's top K images by it, as "
                   "`tir eval --rerank-k` does (scores shown stay the similarity); 0 turns it off. Other methods ignore it.")
def serve(run: Path, index_path: Path | None, host: str, port: int, device: str, rerank_k: int) -> None:
    """Serve a search page for RUN: type a sentence, see the top images with scores, its scene graph and
    the words the model attended to. JSON at /api/search?q=...&k=... (k at most 100, sentences at most
    1000 characters). Needs the serve extra: pip install 'tir[serve]'. Requests that arrive together are
    searched in one batch; on CPU an index of 20,000 images or more also gets an int8 copy for a first pass
    over the gallery (built at start, a few seconds per 100,000 images; the ranking stays exact).
    """
    from tir.commands.evaluate import device_from_option
    from tir.search.locate import find_index
    from tir.search.searcher import COMPACT_MIN_ROWS, Searcher
    from tir.search.server import make_server, require_fastapi

    require_fastapi()
    searcher = Searcher.open(run, find_index(run, index_path), device_from_option(device), rerank_k,
                             compact_min_rows=COMPACT_MIN_ROWS)
    searcher.parse(["warm up"])  # load the parser now, not on the first query
    server = make_server(searcher, host, port, f"tir search: {run.name}")
    click.echo(f"serving {len(searcher.index):,} images of {searcher.index.root} at http://{host}:{port}/ (Ctrl-C stops)")
    server.run()
