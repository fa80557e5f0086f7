"""Parsing speed: captions/s of each graph backend, in one run, and where spaCy's backend spends its time.

spacy: the whole `tir parse-graphs` stage (manifest -> graphs.parquet, start-up included) with --jobs 1
and --jobs N, each in a fresh process; sng: SceneGraphParser's one-caption-at-a-time loop (the anchor). Captions are real-style
and all distinct: run-ons of two to four clauses of the real-style gold set, lower case, 3% of longer
words with two letters swapped. The profile splits one process's CPU time between spaCy's components,
the conversion of its Doc to tir's tree, and tir's rules, and times the start-up of a fresh process (imports and
model load), which every worker of the stage pays once.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from threadpoolctl import threadpool_limits

import tir
from tir.knowledge.graphs import get_backend
from tir.knowledge.graphs.rules import build_graph
from tir.knowledge.graphs.spacy_backend import load_spacy
from tir.knowledge.graphs.tree import from_spacy
from tir.pipeline import store

_MODEL_PARTS = ("spacy tokenizer", "spacy tok2vec", "spacy tagger", "spacy parser", "spacy tir_stepped_parser")  # the model's own work
GOLD = Path(__file__).resolve().parents[1] / "tests" / "data" / "gold_graphs_real_style.jsonl"


def captions(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct real-style captions built from the real-style gold set's clauses."""
    gold = [json.loads(line)["caption"] for line in GOLD.read_text().splitlines() if line.strip()]
    clauses = [part.strip() for text in gold for part in text.replace(";", ".").split(".") if part.strip()]
    rng = random.Random(seed)
    texts: dict[str, None] = {}
    while len(texts) < n:
        joined = rng.choice([" ", ", ", " and ", ". "]).join(rng.choice(clauses) for _ in range(rng.randint(2, 4))).lower()
        words = [w[0] + w[2] + w[1] + w[3:] if len(w) >= 4 and rng.random() < 0.03 else w for w in joined.split()]
        texts[" ".join(words)] = None
    return list(texts)


def profile(texts: list[str], batch_size: int) -> list[tuple[str, float]]:
    """CPU seconds per caption of the tokenizer, each spaCy component, the Doc -> tree conversion and the rules
    (one BLAS thread, as in the stage)."""
    nlp = load_spacy(None)
    started = time.process_time()
    docs = [nlp.make_doc(text) for text in texts]
    parts = [("spacy tokenizer", time.process_time() - started)]
    for name, component in nlp.pipeline:
        started = time.process_time()
        with threadpool_limits(1, user_api="blas"):
            docs = list(component.pipe(docs, batch_size=batch_size)) if hasattr(component, "pipe") else [component(d) for d in docs]
        parts.append((f"spacy {name}", time.process_time() - started))
    started = time.process_time()
    trees = [from_spacy(doc, text) for doc, text in zip(docs, texts)]
    parts.append(("Doc -> tree", time.process_time() - started))
    started = time.process_time()
    for tree in trees:
        build_graph(tree)
    parts.append(("tir rules", time.process_time() - started))
    return [(name, seconds / len(texts)) for name, seconds in parts]


def _same_tir_env() -> dict[str, str]:
    """This process's environment, with the tir it imported first on PYTHONPATH (for child processes)."""
    root = str(Path(tir.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def startup() -> tuple[float, float]:
    """(CPU s, wall s) a fresh process spends importing and loading the spacy backend, as each worker does."""
    code = ("import time; w, c = time.perf_counter(), time.process_time()\n"
            "from tir.knowledge.graphs import get_backend; get_backend('spacy').parse_batch(['a man in a red shirt'])\n"
            "print(time.process_time() - c, time.perf_counter() - w)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_same_tir_env()).stdout.split()
    return float(out[-2]), float(out[-1])


def children_cpu_seconds() -> float:
    """CPU seconds of this process's children that have ended (and of their own ended children)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


_STAGE_RUN = """import sys, time
from pathlib import Path
from joblib.externals.loky import get_reusable_executor
from tir.knowledge.parse_graphs import parse_graphs
started = time.perf_counter()
parse_graphs(Path(sys.argv[1]), backend_options={"batch_size": int(sys.argv[3])}, jobs=int(sys.argv[2]))
print(time.perf_counter() - started)
get_reusable_executor().shutdown(wait=True)  # ends loky workers (if any), so that their CPU time is counted
"""


def stage_rate(texts: list[str], jobs: int, batch_size: int) -> tuple[float, float]:
    """Captions per wall second of `tir parse-graphs` end to end (its workers' start-up and model loading included)
    on a fresh manifest, in a fresh process, and per CPU second of that process and its workers (imports included)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "CUHK-PEDES"
        table = pa.table({"pair_index": pa.array(range(len(texts)), pa.int64()),
                          "split": pa.array(["train"] * len(texts)).dictionary_encode(), "caption": texts})
        store.write_table(table, folder / "manifest.parquet", stage="prepare", options={}, inputs={})
        cpu = children_cpu_seconds()
        out = subprocess.run([sys.executable, "-c", _STAGE_RUN, str(folder), str(jobs), str(batch_size)],
                             capture_output=True, text=True, check=True, env=_same_tir_env()).stdout.split()
        return len(texts) / float(out[-1]), len(texts) / (children_cpu_seconds() - cpu)


def sng_rate(texts: list[str]) -> tuple[float, float]:
    """Captions per wall and per CPU second of SceneGraphParser parsing one caption at a time (model loading
    excluded)."""
    backend = get_backend("sng")
    started, cpu = time.perf_counter(), time.process_time()
    for text in texts:
        backend.parse_one(text)
    return len(texts) / (time.perf_counter() - started), len(texts) / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=12000, help="captions for the spacy stage runs")
    parser.add_argument("--profile-captions", type=int, default=1000, help="captions for the time split")
    parser.add_argument("--sng-captions", type=int, default=400, help="captions for the sng loop")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="workers of the parallel run")
    parser.add_argument("--batch-size", type=int, default=128, help="nlp.pipe batch size")
    args = parser.parse_args()
    texts = captions(args.captions)
    split = profile(texts[: args.profile_captions], args.batch_size)
    total = sum(seconds for _, seconds in split)
    print(f"where one process's CPU time goes ({args.profile_captions} captions, {1000 * total:.2f} ms per caption):")
    for name, seconds in split:
        print(f"  {name:26} {1000 * seconds:6.2f} ms {100 * seconds / total:5.1f}%")
    cpu, wall = startup()
    print(f"start-up of one process (imports, model load, first caption): {cpu:.2f} s CPU, {wall:.2f} s wall")
    floor = sum(seconds for name, seconds in split if name in _MODEL_PARTS)
    print(f"the model alone ({', '.join(_MODEL_PARTS)}): {1000 * floor:.2f} ms per caption; were everything else free, "
          f"{args.captions} captions on {args.jobs} idle cores with one start-up (its CPU time) would take "
          f"{cpu + args.captions * floor / args.jobs:.1f} s: {args.captions / (cpu + args.captions * floor / args.jobs):.0f} captions/s")
    rows = [("spacy, stage, --jobs 1", len(texts), *stage_rate(texts, 1, args.batch_size))]
    if args.jobs > 1:
        rows.append((f"spacy, stage, --jobs {args.jobs}", len(texts), *stage_rate(texts, args.jobs, args.batch_size)))
    rows.append(("sng, one-at-a-time loop", args.sng_captions, *sng_rate(texts[: args.sng_captions])))
    print("captions/s: per wall second; per CPU s: per CPU second of all the run's processes (a loaded machine slows")
    print("the first, hardly the second; on N idle cores the first can reach at most N times the second)")
    print(f"{'backend':32} {'captions':>9} {'captions/s':>11} {'per CPU s':>10} {'x sng':>7}")
    for name, n, rate, cpu_rate in rows:
        print(f"{name:32} {n:9d} {rate:11.1f} {cpu_rate:10.1f} {rate / rows[-1][2]:7.1f}")


if __name__ == "__main__":
    main()
