"""metrics.jsonl (one JSON object per epoch) and curves.png (losses and val metrics per epoch)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from tir.pipeline.store import write_bytes_atomic

METRICS = "metrics.jsonl"
CURVES = "curves.png"


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_metrics(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl atomically (so a resumed run drops epochs past its checkpoint)."""
    write_bytes_atomic(Path(run_dir) / METRICS, "".join(json.dumps(r) + "\n" for r in records).encode())


def plot_curves(run_dir: Path, records: list[dict[str, Any]]) -> Path:
    """Plot every ``loss_*`` and ``val_*`` series against the epoch into curves.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [r["epoch"] for r in records]
    for key in sorted({k for r in records for k in r if k.startswith("loss")}):
        left.plot(epochs, [r.get(key) for r in records], label=key, marker=".")
    for key in ("val_R1", "val_R5", "val_R10", "val_mAP", "val_mINP"):
        points = [(r["epoch"], r[key]) for r in records if key in r]
        if points:
            right.plot(*zip(*points), label=key[4:], marker=".")
    left.set(title="training losses (epoch mean)", xlabel="epoch")
    right.set(title="validation (%)", xlabel="epoch")
    for axis in (left, right):
        if axis.lines:
            axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return write_bytes_atomic(Path(run_dir) / CURVES, buffer.getvalue())
