"""`tir compare`: runs side by side — config differences, test metrics, and the queries one run gets
right at rank 1 and another does not (from each run's ``eval-<split>.parquet``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tir.errors import UserError
from tir.runs import METRIC_KEYS, Run, eval_metrics

IGNORED_KEYS = ("name", "out")  # always differ between runs; the run names head the columns


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config keys as dotted names (``method_options.temperature``)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(runs: list[Run]) -> list[tuple[str, list[Any]]]:
    """(key, value per run) for every config key whose value is not the same in all runs."""
    flats = [flatten(run.config) for run in runs]
    keys = sorted({key for flat in flats for key in flat} - set(IGNORED_KEYS))
    return [(key, [flat.get(key, "-") for flat in flats]) for key in keys if len({repr(flat.get(key, "-")) for flat in flats}) > 1]


@dataclass
class Wins:
    """Queries ``a`` ranks correctly at 1 and ``b`` does not (``only_a``), and the reverse (``only_b``)."""

    a: str
    b: str
    only_a: pd.DataFrame
    only_b: pd.DataFrame
    both: int
    total: int


def per_query(run: Run, split: str) -> pd.DataFrame:
    from tir.pipeline.store import read_table

    return read_table(run.eval_file(split), stage="eval").to_pandas()


def rank1_wins(a: Run, b: Run, split: str = "test") -> Wins:
    """Compare two runs' per-query first-hit ranks; refuse runs evaluated on different queries."""
    left, right = per_query(a, split), per_query(b, split)
    if len(left) != len(right) or not (left["pair_index"].to_numpy() == right["pair_index"].to_numpy()).all():
        raise UserError(f"{a.name} and {b.name} were evaluated on different queries; evaluate both on the same dataset", path=b.eval_file(split))
    a_right, b_right = left["first_hit_rank"] == 1, right["first_hit_rank"] == 1
    columns = [c for c in ("pair_index", "caption", "first_hit_rank") if c in left.columns]
    only_a = left.loc[a_right & ~b_right, columns].assign(other_rank=right.loc[a_right & ~b_right, "first_hit_rank"])
    only_b = right.loc[b_right & ~a_right, columns].assign(other_rank=left.loc[b_right & ~a_right, "first_hit_rank"])
    return Wins(a.name, b.name, only_a, only_b, int((a_right & b_right).sum()), len(left))


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|")


def markdown_report(runs: list[Run], split: str = "test", examples: int = 3) -> str:
    """The comparison as Markdown: config differences, metrics, then rank-1 wins of the first run against each other."""
    metrics = [eval_metrics(run, split).get("metrics", {}) for run in runs]
    head = "| | " + " | ".join(run.name for run in runs) + " |\n|---|" + "---|" * len(runs)
    lines = [f"Config differences ({len(runs)} runs):", "", head]
    differences = config_differences(runs)
    lines += [f"| {key} | " + " | ".join(_cell(v) for v in values) + " |" for key, values in differences]
    if not differences:
        lines.append("| (none) |" + " |" * len(runs))
    best = [run.best_record() for run in runs]
    lines += ["", f"{split.capitalize()} metrics (%):", "", head]
    lines.append("| epochs done | " + " | ".join(str(len(run.records)) for run in runs) + " |")
    lines.append("| best val epoch | " + " | ".join(str(b["epoch"]) if b else "-" for b in best) + " |")
    for key in METRIC_KEYS:
        values = [m.get(key) for m in metrics]
        top = max((v for v in values if v is not None), default=None)
        lines.append(f"| {key} | " + " | ".join("-" if v is None else (f"**{v:.2f}**" if v == top and len(runs) > 1 else f"{v:.2f}") for v in values) + " |")
    for other in runs[1:]:
        wins = rank1_wins(runs[0], other, split)
        lines += ["", f"Rank-1 queries, {wins.a} vs {wins.b} ({wins.total} queries): both right {wins.both}, "
                      f"only {wins.a} {len(wins.only_a)}, only {wins.b} {len(wins.only_b)}."]
        for label, frame in ((wins.a, wins.only_a), (wins.b, wins.only_b)):
            for _, row in frame.head(examples).iterrows():
                other_rank = int(row["other_rank"])
                caption = f" \"{row['caption']}\"" if "caption" in row else ""
                lines.append(f"- only {label}: query {row['pair_index']}{caption} (other run's first hit: "
                             f"{other_rank if other_rank else 'none'})")
    return "\n".join(lines)


def plot_validation(runs: list[Run], out: Path) -> Path:
    """Validation R@1 and mAP per epoch of every run on one figure (PNG)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from tir.pipeline.store import write_bytes_atomic

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        for axis, key in zip(axes, ("val_R1", "val_mAP")):
            points = [(r["epoch"], r[key]) for r in run.records if key in r]
            if points:
                axis.plot(*zip(*points), marker=".", label=run.name)
    for axis, title in zip(axes, ("validation R@1 (%)", "validation mAP (%)")):
        axis.set(title=title, xlabel="epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return write_bytes_atomic(out, buffer.getvalue())
