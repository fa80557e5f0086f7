"""`make demo`: the whole pipeline on the built-in synthetic dataset, on CPU, in a few minutes.

Runs the same commands a user would type (each printed before it runs), leaves every artifact in
the output folder and ends with the test metrics beside chance level.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click
from tir.training.config import read_yaml

DATASET = "CUHK-PEDES"


def _run(args: list[str]) -> None:
    """Run one `tir` command in a subprocess, echoing it; stop the demo if it fails."""
    click.secho("$ tir " + shlex.join(args), bold=True, err=True)
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "tir.cli", *args], check=False)
    if completed.returncode != 0:
        raise SystemExit(f"demo stopped: `tir {args[0]}` failed with exit code {completed.returncode}")
    click.echo(f"  ({time.perf_counter() - started:.1f} s)", err=True)


def chance_levels(gallery_pids: list[int], query_pids: list[int]) -> dict[str, float]:
    """Expected R@K (%) of a random ranking: 1 - C(n - h, K) / C(n, K) per query, averaged."""
    from collections import Counter
    from math import comb

    hits = Counter(gallery_pids)
    n = len(gallery_pids)
    levels = {}
    for k in (1, 5, 10):
        top = min(k, n)
        miss = [comb(n - hits[pid], top) / comb(n, top) for pid in query_pids]
        levels[f"R{k}"] = 100.0 * (1.0 - sum(miss) / len(miss))
    return levels


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="demo", show_default=True,
              help="Folder for every artifact of the demo (raw data, manifests, run, eval.json).")
@click.option("--ids", type=int, default=120, show_default=True, help="Synthetic identities to draw (about 9 of them become test ids).")
@click.option("--config", default="demo", show_default=True,
              help="Training recipe for the demo run: a YAML file or a shipped recipe's name.")
def main(out: str, ids: int, config: str) -> None:
    """Run synth -> prepare -> parse-graphs -> plan-masks -> make-noise -> train -> eval."""
    root = Path(out)
    raw, manifests, run = root / "raw", root / "manifests", root / "runs" / "demo"
    started = time.perf_counter()
    if not (raw / "reid_raw.json").exists():
        _run(["synth", DATASET, "--out", str(raw), "--ids", str(ids), "--images-per-id", "4", "--seed", "0"])
    _run(["prepare", DATASET, "--root", str(raw), "--out", str(manifests / DATASET)])
    _run(["parse-graphs", DATASET, "--manifests", str(manifests)])
    text_length = read_yaml(config).get("text_length", 77)
    _run(["plan-masks", DATASET, "--manifests", str(manifests), "--context-length", str(text_length)])
    _run(["make-noise", DATASET, "--manifests", str(manifests), "--rate", "0.2", "--seed", "1"])
    if (run / "best.pt").exists():
        click.echo(f"reusing the trained run in {run} (delete it to train again)", err=True)
    else:
        _run(["train", "--config", config, "--dataset", DATASET, "--manifests", str(manifests),
              "--out", str(run.parent), "--name", run.name])
    _run(["eval", str(run), "--json", str(root / "eval.json")])
    report(root / "eval.json", manifests / DATASET / "manifest.parquet")
    click.echo(f"demo finished in {time.perf_counter() - started:.0f} s; artifacts in {root}/")


def report(eval_json: Path, manifest: Path) -> None:
    """Print the test metrics beside the chance level of the same gallery."""
    import pandas as pd

    metrics = json.loads(eval_json.read_text())["metrics"]
    test = pd.read_parquet(manifest, columns=["split", "pid", "image_index"]).query("split == 'test'")
    gallery = test.drop_duplicates("image_index")["pid"].tolist()
    chance = chance_levels(gallery, test["pid"].tolist())
    click.echo("\nmetric   model   chance")
    for key in ("R1", "R5", "R10", "mAP", "mINP"):
        level = f"{chance[key]:6.2f}" if key in chance else "     -"
        click.echo(f"{key:<6} {metrics[key]:7.2f}   {level}")


if __name__ == "__main__":
    main()
