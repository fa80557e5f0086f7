"""`tir search RUN "a sentence" ...`: the top images of an index for each sentence."""

from __future__ import annotations

import json
from pathlib import Path

import click


def _graph_line(graph: dict | None) -> str:
    if not graph:
        return ""
    heads = {o["id"]: o["head"] for o in graph["objects"]}
    attributes: dict[int, list[str]] = {}
    for attribute in graph["attributes"]:
        attributes.setdefault(attribute["object"], []).append(attribute["text"])
    objects = "; ".join(f"{head}" + (f" ({', '.join(attributes[i])})" if i in attributes else "") for i, head in heads.items())
    relations = "; ".join(f"{heads.get(r['subject'], '?')} -{r['predicate']}-> {heads.get(r['object'], '?')}" for r in graph["relations"])
    return f"  graph: {objects or 'no objects'}" + (f" | {relations}" if relations else "")


@click.command()
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.argument("sentences", nargs=-1, required=True)
@click.option("--index", "index_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Index file from `tir index` [default: the run folder's only index-*.parquet].")
@click.option("--top", type=click.IntRange(1, 100), default=10, show_default=True, help="Images listed per sentence.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (one object per sentence) instead of text.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a self-contained HTML page with the thumbnails to this file.")
@click.option("--graphs/--no-graphs", default=True, show_default=True, help="Parse each sentence into its scene graph (spaCy).")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N.")
@click.option("--rerank-k", type=click.IntRange(min=0), default=128, show_default=True,
              help="Methods with a matching head (cfack): re-score each sentence's top K images by it, as "
                   "`tir eval --rerank-k` does (scores shown stay the similarity); 0 turns it off. Other methods ignore it.")
def search(run: Path, sentences: tuple[str, ...], index_path: Path | None, top: int, as_json: bool,
           html_path: Path | None, graphs: bool, device: str, rerank_k: int) -> None:
    """Rank RUN's index for each sentence with the method's own test similarity and print the top images.

    For every sentence: rank, score, image path and person id (where known), then the scene graph tir
    parses from it and, for methods with token selection, the words the model attended to. A caption
    of the indexed split gets exactly `tir eval`'s ranking for that query.
    """
    from tir.commands.evaluate import device_from_option
    from tir.pipeline.store import write_bytes_atomic
    from tir.search.locate import find_index
    from tir.search.page import render_page, thumbnail_uri
    from tir.search.searcher import Searcher

    searcher = Searcher.open(run, find_index(run, index_path), device_from_option(device), rerank_k)
    results = searcher.search(list(sentences), top, graphs=graphs)
    if as_json:
        click.echo(json.dumps([result.to_dict() for result in results], indent=2))
    else:
        click.echo(f"{len(searcher.index):,} images in {searcher.index.path} (root {searcher.index.root})")
        for result in results:
            click.echo(f"\n{result.sentence}")
            graph = _graph_line(result.graph)
            if graph:
                click.echo(graph)
            if result.attended:
                click.echo("  attended: " + ", ".join(w["word"] for w in result.attended))
            for hit in result.hits:
                pid = "" if hit.pid is None else f"  pid {hit.pid}"
                click.echo(f"  {hit.rank:>3}  {hit.score:7.4f}  {hit.image_path}{pid}")
    if html_path is not None:
        root = searcher.index.root
        page = render_page(results, lambda path: thumbnail_uri(root / path), f"tir search: {run}", form=False)
        write_bytes_atomic(html_path, page.encode())
        if not as_json:
            click.echo(f"\npage: {html_path}")
