"""Reading a run folder written by `tir train` (and evaluated by `tir eval`) for `tir info` and `tir compare`.

A run folder holds ``config.yaml``, ``metrics.jsonl`` (one record per epoch), ``last.pt`` / ``best.pt``
and, after `tir eval`, ``eval-<split>.parquet`` whose provenance carries the metrics. This module sits
above the stages: it reads their artifacts and imports none of their heavy code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tir.errors import UserError

CONFIG, METRICS, LAST, BEST = "config.yaml", "metrics.jsonl", "last.pt", "best.pt"
METRIC_KEYS = ("R1", "R5", "R10", "mAP", "mINP", "rSum")


@dataclass
class Run:
    """What a run folder says about itself."""

    path: Path
    config: dict[str, Any]
    records: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.path.name

    def best_record(self) -> dict[str, Any] | None:
        """The first epoch with the best validation value of the run's ``best_metric`` (as training chose)."""
        key = f"val_{self.config.get('best_metric', 'R1')}"
        scored = [r for r in self.records if r.get(key) is not None]
        return max(scored, key=lambda r: r[key]) if scored else None  # max keeps the first of equal values

    def eval_file(self, split: str = "test") -> Path:
        return self.path / f"eval-{split}.parquet"


def read_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"cannot read the run config ({type(error).__name__}); re-run `tir train`", path=path) from None
    if not isinstance(config, dict):
        raise UserError("not a run config (expected a YAML mapping)", path=path)
    return config


def read_records(path: Path) -> list[dict[str, Any]]:
    """The epoch records of a metrics.jsonl file; a broken line is a one-line UserError naming it."""
    records = []
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise UserError(f"cannot read ({error.strerror})", path=path) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"line {number} is not JSON; the file was not written by `tir train`", path=path) from None
        if not isinstance(record, dict) or "epoch" not in record:
            raise UserError(f"line {number} is not an epoch record; the file was not written by `tir train`", path=path)
        records.append(record)
    return records


def read_run(path: str | Path) -> Run:
    """A run folder's config and epoch records; a folder that is not a run is a one-line UserError."""
    folder = Path(path)
    if not (folder / CONFIG).is_file():
        raise UserError(f"not a run folder (no {CONFIG}); pass runs/<name> as written by `tir train`", path=folder)
    records = read_records(folder / METRICS) if (folder / METRICS).exists() else []
    return Run(folder, read_config(folder / CONFIG), records)


def eval_metrics(run: Run, split: str = "test") -> dict[str, Any]:
    """The metrics `tir eval` stored with ``eval-<split>.parquet`` (UserError naming the command when absent)."""
    from tir.pipeline.store import read_provenance

    file = run.eval_file(split)
    if not file.exists():
        raise UserError(f"no eval-{split}.parquet; run `tir eval {run.path}{'' if split == 'test' else ' --split ' + split}`", path=run.path)
    provenance = read_provenance(file) or {}
    if provenance.get("stage") != "eval":
        raise UserError("not written by `tir eval`; re-run it", path=file)
    return provenance


def _size(path: Path) -> str:
    size = path.stat().st_size
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return ""


def _metric_line(record: dict[str, Any], prefix: str = "") -> str:
    return "  ".join(f"{key} {record[prefix + key]:.2f}" for key in METRIC_KEYS if record.get(prefix + key) is not None)


def describe_run(path: str | Path) -> str:
    """`tir info RUN_FOLDER`: method, data, epochs done, best epoch and its val metrics, checkpoints, evals."""
    run = read_run(path)
    config = run.config
    lines = [f"{run.path}  (run folder)",
             f"  method {config.get('method')}   model {config.get('model')}   dataset {config.get('dataset') or config.get('manifests')}",
             f"  epochs done: {len(run.records)} of {config.get('epochs')}   seed {config.get('seed')}   "
             f"batch {config.get('batch_size')}   lr {config.get('lr')}"]
    best = run.best_record()
    if best is not None:
        lines.append(f"  best epoch {best['epoch']} (val {config.get('best_metric', 'R1')}): {_metric_line(best, 'val_')}")
    if run.records:
        last = run.records[-1]
        losses = "  ".join(f"{k} {v:.4g}" for k, v in last.items() if k.startswith("loss"))
        lines.append(f"  last epoch {last['epoch']}: {losses}")
    for name in (BEST, LAST):
        if (run.path / name).exists():
            lines.append(f"  checkpoint {name}: {_size(run.path / name)}")
    for file in sorted(run.path.glob("eval-*.parquet")):
        metrics = eval_metrics(run, file.stem.removeprefix("eval-")).get("metrics", {})
        lines.append(f"  {file.name}: {_metric_line(metrics)}")
    for file in sorted(run.path.glob("index-*.parquet")):
        lines.append(f"  {file.name}: {_size(file)}")
    return "\n".join(lines)


def describe_metrics(path: str | Path) -> str:
    """`tir info metrics.jsonl`: epochs, the best validation epoch and the last record."""
    p = Path(path)
    records = read_records(p)
    lines = [f"{p}  (training log: {len(records)} epochs)"]
    if records:
        keys = sorted({k for r in records for k in r})
        lines.append(f"  fields: {', '.join(keys)}")
        run = Run(p.parent, read_config(p.parent / CONFIG) if (p.parent / CONFIG).exists() else {}, records)
        best = run.best_record()
        if best is not None:
            lines.append(f"  best epoch {best['epoch']}: {_metric_line(best, 'val_')}")
        lines.append("  last: " + json.dumps(records[-1]))
    return "\n".join(lines)


def describe_config(path: str | Path) -> str:
    """`tir info config.yaml`: the resolved run config, one key per line."""
    p = Path(path)
    config = read_config(p)
    return "\n".join([f"{p}  (run config)"] + [f"  {key} = {json.dumps(value)}" for key, value in config.items()])


def describe_checkpoint(path: str | Path) -> str:
    """`tir info best.pt`: format, tir version, method, data, epoch, best value and parameter count."""
    from tir.training.checkpoint import read_checkpoint

    p = Path(path)
    state = read_checkpoint(p)
    config, best = state.get("config", {}), state.get("best") or {}
    parameters = sum(t.numel() for t in state.get("model", {}).values())
    resumable = all(key in state for key in ("optimizer", "scheduler", "rng"))
    return "\n".join([
        f"{p}  (checkpoint, format {state.get('format')}, tir {state.get('tir_version')}, {_size(p)})",
        f"  method {config.get('method')}   model {config.get('model')}   dataset {config.get('dataset') or config.get('manifests')}",
        f"  epoch {state.get('epoch')}   step {state.get('step')}   identities {state.get('num_classes')}",
        f"  best: val {best.get('metric')} {best.get('value')} at epoch {best.get('epoch')}",
        f"  parameters: {parameters:,}   optimizer state: {'yes (resumable)' if resumable else 'no'}",
    ])


def describe_path(path: str | Path) -> str | None:
    """The description of a run folder, metrics.jsonl, config.yaml or .pt checkpoint; None for other files."""
    p = Path(path)
    if p.is_dir():
        return describe_run(p)
    if p.suffix == ".pt":
        return describe_checkpoint(p)
    if p.name.endswith(".jsonl"):
        return describe_metrics(p)
    if p.suffix in (".yaml", ".yml"):
        return describe_config(p)
    return None
