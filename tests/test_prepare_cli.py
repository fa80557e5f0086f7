"""`tir prepare` on the command line: summary table, warnings, freshness, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from click.testing import CliRunner

from tir.cli import cli

RAW = Path(__file__).parent / "data" / "raw"


def invoke(*args: str):
    return CliRunner().invoke(cli, ["prepare", *args])


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_prepare_prints_summary_and_warnings_then_is_up_to_date(tmp_path):
    shutil.copy(RAW / "cuhk_pedes.json", tmp_path / "reid_raw.json")
    out = tmp_path / "out"
    args = ["CUHK-pedes", "--root", str(tmp_path), "--out", str(out), "--no-check-images"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "split  ids  images  captions" in first.stdout
    assert any(line.split() == ["train", "2", "3", "4"] for line in first.stdout.splitlines())
    assert any(line.split()[:3] == ["empty_caption", "2", "2"] for line in first.stdout.splitlines())
    assert "warning: counts differ from the published CUHK-PEDES figures" in first.stderr
    assert "'validation' x1" in first.stderr
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == {"manifest.parquet", "rejects.parquet", "stats.json"}
    second = invoke(*args)
    assert second.exit_code == 0 and "is up to date" in second.output and "split" not in second.output
    forced = invoke(*args, "--force")
    assert forced.exit_code == 0 and "split  ids  images  captions" in forced.stdout


def test_annotations_option(tmp_path):
    target = tmp_path / "elsewhere.json"
    shutil.copy(RAW / "data_captions.json", target)
    result = invoke("rstpreid", "--root", str(tmp_path), "--annotations", str(target),
                    "--out", str(tmp_path / "out"), "--no-check-images")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["annotations"] == str(target)


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("not json at all", ["not valid JSON at line 1 column 1"]),
        ('[{"id": 1, "split": "tr', ["truncated", "record 0"]),
        ('{"id": 1}', ["top level is a JSON object"]),
    ],
    ids=["not_json", "truncated", "not_a_list"],
)
def test_bad_file_is_one_line(tmp_path, text, fragments):
    (tmp_path / "reid_raw.json").write_text(text)
    result = invoke("CUHK-PEDES", "--root", str(tmp_path), "--out", str(tmp_path / "out"), "--no-check-images")
    assert_one_line_error(result, str(tmp_path / "reid_raw.json"), *fragments)
    assert not (tmp_path / "out").exists()


def test_missing_annotation_file_is_one_line(tmp_path):
    result = invoke("ICFG-PEDES", "--root", str(tmp_path), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, str(tmp_path), "ICFG-PEDES.json, ICFG_PEDES.json", "--annotations")


def test_missing_annotations_option_file_is_one_line(tmp_path):
    result = invoke("RSTPReid", "--root", str(tmp_path), "--annotations", str(tmp_path / "nope.json"))
    assert_one_line_error(result, "nope.json", "not found")


def test_unknown_dataset_is_one_line(tmp_path):
    result = invoke("Market-1501", "--root", str(tmp_path))
    assert_one_line_error(result, "unknown dataset", "CUHK-PEDES")


def test_manifests_option_and_a_root_that_holds_the_dataset_folder(tmp_path):
    data = tmp_path / "data" / "CUHK-PEDES"  # the layout the reference repositories document
    data.mkdir(parents=True)
    shutil.copy(RAW / "cuhk_pedes.json", data / "reid_raw.json")
    result = invoke("cuhk-pedes", "--root", str(tmp_path / "data"), "--manifests", str(tmp_path / "m"), "--no-check-images")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "CUHK-PEDES" / "manifest.parquet").exists()
    both = invoke("cuhk-pedes", "--root", str(data), "--manifests", str(tmp_path / "m"), "--out", str(tmp_path / "o"))
    assert_one_line_error(both, "not both")


def test_records_with_none_of_the_expected_keys_are_an_error_not_an_empty_manifest(tmp_path):
    records = [{"img": f"a/{i}.png", "person": i, "part": "train", "texts": ["a man"]} for i in range(3)]
    (tmp_path / "reid_raw.json").write_text(json.dumps(records))
    result = invoke("CUHK-PEDES", "--root", str(tmp_path), "--out", str(tmp_path / "out"), "--no-check-images")
    assert_one_line_error(result, "no record could be kept", "3 of 3 records: missing_key", "--format custom")
    assert not (tmp_path / "out" / "manifest.parquet").exists()


def test_custom_json_with_other_keys_and_a_name_of_ones_choosing(tmp_path):
    records = [{"img": f"a/{i}.png", "person": i // 2, "part": ["train", "test"][i % 2], "texts": ["a man", "a coat"]}
               for i in range(6)]
    (tmp_path / "shop.json").write_text(json.dumps(records))
    result = invoke("MyShop", "--format", "custom", "--root", str(tmp_path), "--annotations", str(tmp_path / "shop.json"),
                    "--manifests", str(tmp_path / "m"), "--image-key", "img", "--id-key", "person",
                    "--split-key", "part", "--captions-key", "texts", "--no-check-images")
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "m" / "MyShop" / "manifest.parquet")
    assert len(frame) == 12 and frame["image_path"].iloc[0] == "a/0.png" and set(frame["split"]) == {"train", "test"}
    from tir.pipeline.layout import dataset_dir

    assert dataset_dir("MyShop", tmp_path / "m") == tmp_path / "m" / "MyShop"  # later stages find it by name


def test_custom_csv_one_caption_per_row_with_images(tmp_path):
    (tmp_path / "imgs").mkdir()
    lines = ["image_path,person_id,caption,split"]
    for i in range(4):
        Image.new("RGB", (8, 16)).save(tmp_path / "imgs" / f"{i}.png")
        lines += [f"{i}.png,{i // 2},\"a person, number {i}\",train", f"{i}.png,{i // 2},another caption,train"]
    (tmp_path / "annotations.csv").write_text("\n".join(lines) + "\n")
    result = invoke("street", "--format", "custom", "--root", str(tmp_path), "--out", str(tmp_path / "out"), "--jobs", "1")
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert frame["caption"].tolist()[:2] == ["a person, number 0", "another caption"]
    assert frame["caption_index"].tolist()[:2] == [0, 1] and frame["width"].tolist()[0] == 8
    bad = invoke("street", "--format", "custom", "--root", str(tmp_path), "--out", str(tmp_path / "o2"), "--id-key", "pid")
    assert_one_line_error(bad, "lacks pid", "--id-key")
