"""Scene-graph quality of each parser backend, as a table (or JSON).

Every available backend parses (a) the hand-annotated clean gold set ``tests/data/gold_graphs.jsonl``,
(b) the hand-annotated real-style gold set ``tests/data/gold_graphs_real_style.jsonl`` (lower case, run-ons,
typos, capitals) and (c) the ground-truth captions of a fresh ``tir synth`` dataset; precision / recall / F1 of objects,
(object, attribute) pairs and (subject, predicate, object) triples come from
``tir.knowledge.graph_scoring``, with the parse speed in captions per second of wall-clock time and of CPU time
(model loading excluded).

    python benchmarks/graph_quality.py [--backends spacy,sng] [--synth-ids 60] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from tir.errors import UserError
from tir.knowledge.graph_scoring import LEVELS, LevelScore, graph_from_row, read_graphs, score_graphs
from tir.knowledge.graphs import BACKENDS, get_backend
from tir.pipeline.synth import GRAPHS_FILE, synthesize

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
GOLD = DATA / "gold_graphs.jsonl"
REAL_STYLE_GOLD = DATA / "gold_graphs_real_style.jsonl"

Parse = Callable[[Sequence[str]], list[dict[str, Any]]]


def load_backend(name: str) -> Parse:
    """A function from captions to plain graphs for backend ``name`` (raises UserError when unusable)."""
    backend = get_backend(name)
    return lambda captions: [graph_from_row(graph.to_row()) for graph in backend.parse_batch(list(captions))]


def datasets(synth_ids: int, synth_images: int, seed: int, workdir: Path) -> dict[str, list[dict[str, Any]]]:
    """The reference graphs to score against: both gold sets, and tir synth's ground truth."""
    synthesize("CUHK-PEDES", workdir, ids=synth_ids, images_per_id=synth_images, seed=seed, progress=False)
    return {"gold": read_graphs(GOLD), "real": read_graphs(REAL_STYLE_GOLD), "synth": read_graphs(workdir / GRAPHS_FILE)}


def measure(parse: Parse, references: list[dict[str, Any]]) -> tuple[dict[str, LevelScore], float, float]:
    """Scores of ``parse`` on the captions of ``references`` and its speed in captions per second, of wall-clock
    time and of this process's CPU time (the second is steadier on a shared machine)."""
    captions = [r["caption"] for r in references]
    start, cpu_start = time.perf_counter(), time.process_time()
    predicted = parse(captions)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return score_graphs(predicted, references), len(captions) / max(seconds, 1e-9), len(captions) / max(cpu_seconds, 1e-9)


def table(results: list[dict[str, Any]]) -> str:
    """Plain-text table: backend x dataset, P / R / F1 (percent) per level, captions/s (wall, CPU)."""
    levels = " ".join(f"{level + ' P/R/F1':>20}" for level in LEVELS)
    header = f"{'backend':<8} {'dataset':<7} {'captions':>8} {levels} {'captions/s':>10} {'per CPU s':>9}"
    lines = [header, "-" * len(header)]
    for r in results:
        cells = " ".join(
            f"{'{:.1f} {:.1f} {:.1f}'.format(*(100 * r[level][k] for k in ('precision', 'recall', 'f1'))):>20}"
            for level in LEVELS
        )
        lines.append(f"{r['backend']:<8} {r['dataset']:<7} {r['captions']:>8} {cells} {r['captions_per_s']:>10.0f}"
                     f" {r['captions_per_cpu_s']:>9.0f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated backend names")
    parser.add_argument("--synth-ids", type=int, default=60, help="identities of the synthetic dataset")
    parser.add_argument("--synth-images-per-id", type=int, default=2, help="images per synthetic identity")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tir-graph-quality-") as tmp:
        references = datasets(args.synth_ids, args.synth_images_per_id, args.seed, Path(tmp) / "synth")
    results: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        try:
            parse = load_backend(name)
        except (UserError, ImportError) as error:
            skipped[name] = str(error).splitlines()[0]
            continue
        for dataset, refs in references.items():
            scores, speed, cpu_speed = measure(parse, refs)
            results.append(
                {
                    "backend": name,
                    "dataset": dataset,
                    "captions": len(refs),
                    "captions_per_s": speed,
                    "captions_per_cpu_s": cpu_speed,
                    **{
                        level: {"precision": s.precision, "recall": s.recall, "f1": s.f1, "matched": s.matched,
                                "predicted": s.predicted, "gold": s.gold}
                        for level, s in scores.items()
                    },
                }
            )  # fmt: skip
    if args.json:
        print(json.dumps({"results": results, "skipped": skipped}, indent=2))
    else:
        print(table(results))
        for name, reason in skipped.items():
            print(f"skipped {name}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
