"""metrics.jsonl (one JSON object per epoch) and curves.png (losses, learning rate and val metrics per epoch)."""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path
from typing import Any

from tir.pipeline.store import write_bytes_atomic

METRICS = "metrics.jsonl"
CURVES = "curves.png"
VAL_KEYS = ("val_R1", "val_R5", "val_R10", "val_mAP", "val_mINP")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_metrics(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl atomically (so a resumed run drops epochs past its checkpoint)."""
    write_bytes_atomic(Path(run_dir) / METRICS, "".join(json.dumps(r) + "\n" for r in records).encode())


def series_colour(name: str) -> str:
    """A colour fixed by the series name, so that one loss has one colour in every run's curves."""
    import matplotlib

    palette = matplotlib.colormaps["tab20"].colors
    return matplotlib.colors.to_hex(palette[zlib.crc32(name.encode()) % len(palette)])


def curves_figure(records: list[dict[str, Any]], best_epoch: int | None = None):
    """The curves figure: losses (left), val metrics (middle), learning rate (right); the chosen epoch dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, (losses, validation, rate) = plt.subplots(1, 3, figsize=(15, 4))
    epochs = [r["epoch"] for r in records]
    for key in sorted({k for r in records for k in r if k.startswith("loss")}):
        losses.plot(epochs, [r.get(key) for r in records], label=key, marker=".", color=series_colour(key))
    for key in VAL_KEYS:
        points = [(r["epoch"], r[key]) for r in records if key in r]
        if points:
            validation.plot(*zip(*points), label=key[4:], marker=".", color=series_colour(key))
    points = [(r["epoch"], r["lr"]) for r in records if "lr" in r]
    if points:
        rate.plot(*zip(*points), label="lr (end of epoch)", marker=".", color=series_colour("lr"))
    losses.set(title="training losses (epoch mean)", xlabel="epoch")
    validation.set(title="validation (%)", xlabel="epoch")
    rate.set(title="base learning rate", xlabel="epoch")
    for axis in (losses, validation, rate):
        if best_epoch is not None:
            axis.axvline(best_epoch, color="0.4", linestyle="--", linewidth=1, label=f"best.pt (epoch {best_epoch})")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axis.lines:
            axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def plot_curves(run_dir: Path, records: list[dict[str, Any]], best_epoch: int | None = None) -> Path:
    """Draw curves.png in the run folder (see ``curves_figure``)."""
    import matplotlib.pyplot as plt

    figure = curves_figure(records, best_epoch)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return write_bytes_atomic(Path(run_dir) / CURVES, buffer.getvalue())
