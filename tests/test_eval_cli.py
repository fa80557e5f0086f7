"""`tir eval`: a run folder or checkpoint file in, the metrics table, JSON, per-query Parquet and plot out."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from tir.cli import cli
from tir.pipeline import store
from tir.training import config as config_io
from tir.training.build import build_method
from tir.training.checkpoint import save_checkpoint

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    (root / "data" / "imgs").mkdir(parents=True)
    rows = []
    for split, ids in (("train", 2), ("test", 3)):
        for image in range(ids * 2):
            path = f"{split}_{image}.png"
            Image.new("RGB", (32, 64), (40 * image, 80, 200 - 30 * image)).save(root / "data" / "imgs" / path)
            for caption in range(2):
                rows.append(dict(split=split, pid=image // 2, image_index=image, image_path=path,
                                 caption=f"a person in colour {image} number {caption}"))
    frame = pd.DataFrame(rows)
    frame.insert(0, "pair_index", frame.groupby("split").cumcount())
    manifests = root / "manifests"
    store.write_table(pa.Table.from_pandas(frame, preserve_index=False), manifests / "manifest.parquet",
                      stage="prepare", options={"root": str(root / "data")}, inputs={})
    config = config_io.resolve(options=dict(manifests=str(manifests), model="tir-micro", image_size=[64, 32], method="rde",
                                            method_options={"tse_dim": 32}, image_cache=False, num_workers=0))
    torch.manual_seed(0)
    method = build_method(config, num_classes=2, with_pretrained=False)
    run = root / "runs" / "rde-test"
    save_checkpoint(run / "best.pt", {"config": config, "num_classes": 2, "epoch": 3, "step": 9, "model": method.state_dict(),
                                      "best": {"metric": "R1", "value": 50.0, "epoch": 3}})
    return run


def test_eval_run_folder_writes_table_json_parquet_plot(run_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["eval", str(run_dir), "--json", str(tmp_path / "m.json"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "R@1" in result.output and "mINP" in result.output and "12 queries x 6 images" in result.output
    summary = json.loads((tmp_path / "m.json").read_text())
    assert set(summary["metrics"]) == {"R1", "R5", "R10", "mAP", "mINP", "rSum"}
    assert summary["metrics"]["R10"] == 100.0 and summary["epoch"] == 3  # 6 images: every hit is in the top 10
    table = store.read_table(run_dir / "eval-test.parquet", stage="eval").to_pandas()
    assert len(table) == 12 and table["first_hit_rank"].between(1, 6).all()
    assert 100 * table["ap"].mean() == pytest.approx(summary["metrics"]["mAP"])
    assert (run_dir / "eval-test.png").stat().st_size > 1000


def test_eval_checkpoint_file_without_plot(run_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["eval", str(run_dir / "best.pt"), "--no-plot", "--batch-size", "5"])
    assert result.exit_code == 0, result.output
    assert "plot" not in result.output


@pytest.mark.parametrize("content", [None, b"not a checkpoint"])
def test_missing_or_corrupt_checkpoint_is_one_line(tmp_path: Path, content: bytes | None) -> None:
    target = tmp_path / "model.pt"
    if content is not None:
        target.write_bytes(content)
    result = CliRunner().invoke(cli, ["eval", str(target)])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "model.pt" in result.output


DOCTORED = {  # name -> (change to the checkpoint dict, fragment of the error)
    "no_config": (lambda s: s.pop("config"), "config is missing"),
    "num_classes_text": (lambda s: s.update(num_classes="two"), "num_classes is missing or is not a class count"),
    "model_not_tensors": (lambda s: s.update(model={"x": "y"}), "not tensors"),
    "weights_cut": (lambda s: s["model"].pop(next(iter(s["model"]))), "do not fit its own config (missing 1, e.g. "),
    "weights_of_another_tir": (lambda s: s["model"].update(extra=torch.zeros(1)), "unexpected 1, e.g. extra"),
    "weights_reshaped": (lambda s: s["model"].update(
        next({k: v[:1]} for k, v in s["model"].items() if v.ndim and v.shape[0] > 1)), "of another shape"),
    "unknown_method": (lambda s: s["config"].update(method="nope"), "unknown method 'nope'"),
    "config_without_model": (lambda s: s["config"].pop("image_size"), "config lacks image_size"),
}


@pytest.mark.parametrize("case", list(DOCTORED))
def test_doctored_checkpoint_is_one_line(run_dir: Path, tmp_path: Path, case: str) -> None:
    state = torch.load(run_dir / "best.pt", weights_only=True)
    change, fragment = DOCTORED[case]
    change(state)
    torch.save(state, tmp_path / "doctored.pt")
    result = CliRunner().invoke(cli, ["eval", str(tmp_path / "doctored.pt"), "--no-plot"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert fragment in result.output


def test_val_without_val_split_uses_heldout_identities(run_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["eval", str(run_dir), "--split", "val", "--no-plot"])
    # no val split in this manifest: the run's held-out train identities are evaluated instead
    assert result.exit_code == 0, result.output


def test_eval_refuses_a_manifest_other_than_the_runs(run_dir: Path, tmp_path: Path) -> None:
    from tir.training.checkpoint import data_manifest_fingerprint

    state = torch.load(run_dir / "best.pt", weights_only=True)
    state["manifest"] = data_manifest_fingerprint(state["config"])
    torch.save(state, tmp_path / "best.pt")
    same = CliRunner().invoke(cli, ["eval", str(tmp_path / "best.pt"), "--no-plot"])
    assert same.exit_code == 0, same.output
    assert "WARNING" not in same.output
    frame = pd.read_parquet(Path(state["config"]["manifests"]) / "manifest.parquet")
    other = tmp_path / "reprepared"
    store.write_table(pa.Table.from_pandas(frame.iloc[:-2], preserve_index=False), other / "manifest.parquet",
                      stage="prepare", options=store.read_provenance(Path(state["config"]["manifests"]) / "manifest.parquet")["options"],
                      inputs={})
    refused = CliRunner().invoke(cli, ["eval", str(tmp_path / "best.pt"), "--no-plot", "--manifests", str(other)])
    assert refused.exit_code == 2 and "is not the manifest this run was trained on" in refused.output
    assert "--allow-other-manifest" in refused.output and refused.output.count("\n") == 1
    allowed = CliRunner().invoke(cli, ["eval", str(tmp_path / "best.pt"), "--no-plot", "--manifests", str(other),
                                       "--allow-other-manifest", "--json", str(tmp_path / "m.json")])
    assert allowed.exit_code == 0, allowed.output
    assert "WARNING: scoring on another manifest" in allowed.output
    assert json.loads((tmp_path / "m.json").read_text())["manifest_warning"].startswith("scoring on another manifest")


def test_missing_split_hint_names_the_split_that_exists(run_dir: Path, tmp_path: Path) -> None:
    config = torch.load(run_dir / "best.pt", weights_only=True)["config"]
    frame = pd.read_parquet(Path(config["manifests"]) / "manifest.parquet")
    frame["split"] = frame["split"].replace({"test": "val"})
    store.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "manifest.parquet", stage="prepare",
                      options=store.read_provenance(Path(config["manifests"]) / "manifest.parquet")["options"], inputs={})
    result = CliRunner().invoke(cli, ["eval", str(run_dir), "--no-plot", "--manifests", str(tmp_path)])
    assert result.exit_code == 2 and "has no test split; pass --split val" in result.output
