"""`tir eval RUN_OR_CHECKPOINT`: retrieval metrics of a trained method on the test (or val) split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

METRIC_LABELS = (("R1", "R@1"), ("R5", "R@5"), ("R10", "R@10"), ("mAP", "mAP"), ("mINP", "mINP"), ("rSum", "rSum"))


def metrics_table(metrics: dict[str, float]) -> str:
    """Two aligned lines: metric names and values (percent, 2 decimals)."""
    head = " ".join(f"{label:>7}" for _, label in METRIC_LABELS)
    values = " ".join(f"{metrics[key]:>7.2f}" for key, _ in METRIC_LABELS)
    return f"{head}\n{values}"


def device_from_option(name: str):
    """The torch device of a --device option (auto, cpu, cuda, cuda:N); a one-line UserError when unusable."""
    import torch

    from tir.errors import UserError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; pass auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA device is available; pass --device cpu")
    return device


def run_eval(
    checkpoint: Path,
    split: str,
    device_name: str,
    batch_size: int | None,
    manifests: str | None,
    image_root: str | None,
    plot: bool,
    allow_other_manifest: bool = False,
    worst: int | None = None,
    rerank_k: int = 0,
) -> dict[str, Any]:
    """Evaluate a run folder's best checkpoint (or a checkpoint file); write its per-query table and plot."""
    from tir.errors import UserError
    from tir.pipeline import store
    from tir.pipeline.layout import MANIFEST, dataset_dir
    from tir.training.build import tokenizer_for
    from tir.training.checkpoint import BEST, LAST, check_manifest, load_method
    from tir.training.data import EvalImages, holdout_val, image_root as find_image_root, make_tokenize, read_manifest
    from tir.training.evaluation import eval_data, evaluate
    from tir.training.precision import amp_dtype
    from tir.training.image_cache import ImageStore, build_cache
    from tir.training.retrieval_plot import plot_retrievals

    device = device_from_option(device_name)
    method, config, state = load_method(checkpoint, device)
    if checkpoint.is_dir():
        run_dir, file = checkpoint, checkpoint / (BEST if (checkpoint / BEST).exists() else LAST)
    else:
        run_dir, file = checkpoint.parent, checkpoint
    root = manifests if manifests is not None else config["manifests"]
    folder = dataset_dir(config["dataset"], root) if config.get("dataset") else Path(root)
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        raise UserError("manifest of the run's dataset not found; pass --manifests (the artifact root)", path=manifest_path)
    manifest_warning = check_manifest(state, manifest_path, allow_other_manifest)
    manifest = read_manifest(manifest_path)
    if split == "val" and not (manifest["split"] == "val").any():
        manifest = holdout_val(manifest, config["val_fraction"], config["seed"])  # the run's held-out val ids
    if not (manifest["split"] == split).any():
        other = "val" if split == "test" else "test"
        fix = f"pass --split {other}" if (manifest["split"] == other).any() else "re-run `tir prepare` with annotations that have it"
        raise UserError(f"the manifest has no {split} split; {fix}", path=manifest_path)
    images_root = find_image_root(manifest_path, image_root if image_root is not None else config.get("image_root"))
    size = tuple(config["image_size"])
    paths = sorted(set(manifest.loc[manifest["split"] == split, "image_path"]))
    cache = build_cache(images_root, paths, size, folder / "cache") if config.get("image_cache") else None
    load_image = EvalImages(ImageStore(images_root, paths, size, cache))
    tokenize = make_tokenize(tokenizer_for(config), config["text_length"])
    data = eval_data(manifest, split, load_image, tokenize, batch_size or config["eval_batch_size"],
                     num_workers=config["num_workers"] if device.type == "cuda" else 0)
    result = evaluate(method, data, device, amp=amp_dtype(str(config["amp"]), device), rerank_k=rerank_k)

    import pyarrow as pa

    table = pa.Table.from_pandas(result.per_query, preserve_index=False)
    summary = {
        "checkpoint": str(file),
        "epoch": state.get("epoch"),
        "method": config["method"],
        "dataset": config.get("dataset") or folder.name,
        "split": split,
        "queries": len(data.queries),
        "gallery": len(data.gallery),
        "seconds": round(result.seconds, 2),
        "metrics": result.metrics,
        "manifest_warning": manifest_warning,
    }
    ranks = store.write_table(table, run_dir / f"eval-{split}.parquet", stage="eval",
                              options={"split": split}, inputs={"checkpoint": file, "manifest": manifest_path},
                              extra={"metrics": result.metrics})
    summary["per_query"] = str(ranks)
    if result.reranked is not None:  # a re-ranking method (cfack): its matching head re-scores each top k
        reranked = pa.Table.from_pandas(result.reranked_per_query, preserve_index=False)
        summary.update(rerank_k=rerank_k, metrics_reranked=result.reranked, rerank_seconds=round(result.rerank_seconds, 2))
        summary["per_query_reranked"] = str(store.write_table(
            reranked, run_dir / f"eval-{split}-reranked.parquet", stage="eval",
            options={"split": split, "rerank_k": rerank_k}, inputs={"checkpoint": file, "manifest": manifest_path},
            extra={"metrics": result.reranked}))
    if plot:
        summary["plot"] = str(plot_retrievals(result.per_query, data.queries, data.gallery, images_root,
                                              run_dir / f"eval-{split}.png", worst=worst))
        from tir.training.methods.base import EvalFigures

        summary["figures"] = method.eval_figures(EvalFigures(result.per_query, data.queries, data.gallery, images_root,
                                                             tokenizer_for(config), config["text_length"], device,
                                                             run_dir / f"eval-{split}"))
    return summary


@click.command()
@click.argument("run_or_checkpoint", metavar="RUN_OR_CHECKPOINT", type=click.Path(path_type=Path))
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
              help="Split to evaluate: queries are its captions, the gallery its images. "
                   "val without a val split (ICFG-PEDES) is the run's seeded held-out identities.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the metrics and run details as JSON to this file.")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Images / captions encoded per batch [default: the run's eval_batch_size].")
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N.")
@click.option("--manifests", type=click.Path(file_okay=False),
              help="Artifact root holding <dataset>/manifest.parquet [default: the run's manifests].")
@click.option("--image-root", type=click.Path(file_okay=False),
              help="Folder the manifest's image paths are relative to [default: the run's, else <prepare --root>/imgs].")
@click.option("--allow-other-manifest", is_flag=True,
              help="Score the run even when the manifest is not the one it was trained on (refused otherwise); "
                   "the result then carries a warning.")
@click.option("--rerank-k", type=click.IntRange(min=0), default=128, show_default=True,
              help="Methods with a matching head (cfack): also re-score each query's top K gallery images by it and "
                   "report those metrics beside the plain ones (eval-<split>-reranked.parquet); 0 turns it off. "
                   "Other methods ignore it.")
@click.option("--plot/--no-plot", default=True, show_default=True,
              help="Draw eval-<split>.png in the run folder: six queries (a seeded choice, the same for every "
                   "run of the dataset) with their top-5 images, hits green, and a miss's correct image with its rank; "
                   "methods may add their own (ssan: eval-<split>-parts.png, word-part scores beside the image stripes).")
@click.option("--worst", type=click.IntRange(min=1), metavar="N",
              help="Draw the N queries with the worst first-hit rank instead of the seeded choice.")
def evaluate(run_or_checkpoint: Path, split: str, json_path: Path | None, batch_size: int | None, device: str,
             manifests: str | None, image_root: str | None, allow_other_manifest: bool, rerank_k: int, plot: bool,
             worst: int | None) -> None:
    """Evaluate a trained run: R@1/5/10, mAP, mINP and rSum on the test split.

    RUN_OR_CHECKPOINT is a run folder (runs/<name>: its best.pt, else last.pt) or a .pt file
    written by `tir train`. Per-query ranks go to eval-<split>.parquet in the run folder
    (pair_index, pid, first_hit_rank, ap, inp, n_hits, top10 image indices, caption, image_path,
    first_hit_image, first_hit_path, top10_paths).
    """
    from tir.pipeline.store import write_json_atomic

    summary = run_eval(run_or_checkpoint, split, device, batch_size, manifests, image_root, plot, allow_other_manifest,
                       worst, rerank_k)
    if summary["manifest_warning"]:
        click.echo(f"WARNING: {summary['manifest_warning']}", err=True)
    click.echo(f"{summary['method']} on {summary['dataset']} {split}: {summary['queries']:,} queries x "
               f"{summary['gallery']:,} images, checkpoint {summary['checkpoint']} (epoch {summary['epoch']})")
    click.echo(metrics_table(summary["metrics"]))
    if "metrics_reranked" in summary:
        click.echo(f"re-ranked (top {summary['rerank_k']} re-scored by the matching head, {summary['rerank_seconds']} s):")
        click.echo(metrics_table(summary["metrics_reranked"]))
    click.echo(f"per-query ranks: {summary['per_query']}" + (f"; plot: {summary['plot']}" if plot else ""))
    for name, path in summary.get("figures", {}).items():
        click.echo(f"{name.replace('_', ' ')}: {path}")
    if json_path is not None:
        write_json_atomic(json_path, summary)
        click.echo(f"metrics: {json_path}")
