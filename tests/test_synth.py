"""`tir synth`: raw formats, layouts, splits, caption counts, determinism and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from tir.cli import cli
from tir.errors import UserError
from tir.pipeline.synth import GRAPHS_FILE, MARKER, synthesize
from tir.pipeline.synth.formats import FORMATS

EXPECTED = {
    # format: (annotation, record keys, first id, splits, captions per image allowed)
    "CUHK-PEDES": ("reid_raw.json", ["split", "captions", "file_path", "processed_tokens", "id"], 1,
                   {"train", "val", "test"}, {1, 2, 3}),
    "ICFG-PEDES": ("ICFG-PEDES.json", ["split", "captions", "file_path", "processed_tokens", "id"], 0,
                   {"train", "test"}, {1}),
    "RSTPReid": ("data_captions.json", ["id", "img_path", "captions", "split"], 0, {"train", "val", "test"}, {2}),
}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synth")
    return {name: _make(root / name, name) for name in FORMATS}


def _make(out: Path, name: str, seed: int = 0) -> Path:
    synthesize(name, out, ids=12, images_per_id=3, seed=seed, progress=False)
    return out


def _records(out: Path, name: str) -> list[dict]:
    return json.loads((out / EXPECTED[name][0]).read_text())


@pytest.mark.parametrize("name", list(FORMATS))
def test_raw_format_keys_types_and_files(datasets, name):
    annotation, keys, first_id, splits, counts = EXPECTED[name]
    out = datasets[name]
    records = _records(out, name)
    assert len(records) == 12 * 3
    image_key = "img_path" if name == "RSTPReid" else "file_path"
    for record in records:
        assert list(record) == keys
        assert isinstance(record["id"], int) and record["id"] >= first_id
        assert record["split"] in splits
        assert isinstance(record["captions"], list) and len(record["captions"]) in counts
        assert all(isinstance(caption, str) and caption.strip() for caption in record["captions"])
        assert len(set(record["captions"])) == len(record["captions"])
        if "processed_tokens" in record:
            assert len(record["processed_tokens"]) == len(record["captions"])
            assert all(isinstance(token, str) for tokens in record["processed_tokens"] for token in tokens)
        path = out / "imgs" / record[image_key]
        assert path.is_file()
        with Image.open(path) as image:
            assert image.size == (64, 160)
    assert min(r["id"] for r in records) == first_id
    assert {r["split"] for r in records} == splits
    assert len({r[image_key] for r in records}) == len(records)


@pytest.mark.parametrize("name", list(FORMATS))
def test_ids_are_contiguous_per_split_train_first(datasets, name):
    records = _records(datasets[name], name)
    order = [r["split"] for r in records]
    assert order == sorted(order, key=["train", "val", "test"].index)
    ids = sorted({r["id"] for r in records})
    assert ids == list(range(ids[0], ids[0] + 12))
    for split in {r["split"] for r in records}:
        assert len({r["id"] for r in records if r["split"] == split}) >= 1


def test_layouts(datasets):
    cuhk = {Path(r["file_path"]).parts[0] for r in _records(datasets["CUHK-PEDES"], "CUHK-PEDES")}
    assert cuhk <= {"CUHK01", "CUHK03", "Market", "cam_a", "cam_b", "train_query", "test_query"}
    icfg = _records(datasets["ICFG-PEDES"], "ICFG-PEDES")
    assert all(Path(r["file_path"]).parts[0] in ("train", "test") and len(Path(r["file_path"]).parts) == 3 for r in icfg)
    assert all("/" not in r["img_path"] for r in _records(datasets["RSTPReid"], "RSTPReid"))


def test_split_rule_keeps_a_few_ids_in_held_out_splits():
    assert FORMATS["CUHK-PEDES"].split_sizes(60) == {"train": 50, "val": 5, "test": 5}
    assert FORMATS["CUHK-PEDES"].split_sizes(13003) == {"train": 11003, "val": 1000, "test": 1000}
    assert FORMATS["ICFG-PEDES"].split_sizes(60) == {"train": 45, "test": 15}
    assert FORMATS["RSTPReid"].split_sizes(3) == {"train": 1, "val": 1, "test": 1}
    with pytest.raises(UserError):
        FORMATS["RSTPReid"].split_sizes(2)


@pytest.mark.parametrize("name", list(FORMATS))
def test_graphs_file_is_aligned_with_raw_order(datasets, name):
    out = datasets[name]
    image_key = "img_path" if name == "RSTPReid" else "file_path"
    expected = [(r["split"], r[image_key], i, c) for r in _records(out, name) for i, c in enumerate(r["captions"])]
    rows = [json.loads(line) for line in (out / GRAPHS_FILE).read_text().splitlines()]
    assert [(row["split"], row["image"], row["caption_index"], row["caption"]) for row in rows] == expected
    for row in rows:
        assert list(row) == ["split", "image", "caption_index", "caption", "objects", "attributes", "relations"]
        n = len(row["objects"])
        assert all(0 <= o < n and isinstance(text, str) for o, text in row["attributes"])
        assert all(0 <= s < n and 0 <= o < n and isinstance(p, str) for s, p, o in row["relations"])


def test_same_seed_same_bytes_other_seed_differs(tmp_path, datasets):
    again = _make(tmp_path / "again", "CUHK-PEDES")
    first = datasets["CUHK-PEDES"]
    for name in ("reid_raw.json", GRAPHS_FILE, MARKER):
        assert (again / name).read_bytes() == (first / name).read_bytes()
    images = sorted(p.relative_to(first) for p in (first / "imgs").rglob("*.*"))
    assert images == sorted(p.relative_to(again) for p in (again / "imgs").rglob("*.*"))
    assert all((first / p).read_bytes() == (again / p).read_bytes() for p in images)
    other = _make(tmp_path / "other", "CUHK-PEDES", seed=1)
    assert (other / "reid_raw.json").read_bytes() != (first / "reid_raw.json").read_bytes()


def test_parallel_drawing_gives_the_same_images(tmp_path):
    one = synthesize("RSTPReid", tmp_path / "one", ids=3, images_per_id=2, jobs=1, progress=False)
    two = synthesize("RSTPReid", tmp_path / "two", ids=3, images_per_id=2, jobs=2, progress=False)
    assert one["splits"] == two["splits"]
    for path in (tmp_path / "one" / "imgs").iterdir():
        assert path.read_bytes() == (tmp_path / "two" / "imgs" / path.name).read_bytes()


def test_refuses_a_foreign_folder_and_replaces_its_own(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        synthesize("RSTPReid", tmp_path, ids=3, images_per_id=1, progress=False)
    out = tmp_path / "synth"
    synthesize("RSTPReid", out, ids=4, images_per_id=2, progress=False)
    synthesize("RSTPReid", out, ids=3, images_per_id=1, progress=False)
    assert len(list((out / "imgs").iterdir())) == 3


def test_cli_help_and_run(tmp_path):
    runner = CliRunner()
    help_text = runner.invoke(cli, ["synth", "--help"])
    assert help_text.exit_code == 0
    for option in ("--out", "--ids", "--images-per-id", "--seed", "--size", "--jobs"):
        assert option in help_text.output
    out = tmp_path / "rstp"
    result = runner.invoke(cli, ["synth", "rstpreid", "--out", str(out), "--ids", "6", "--images-per-id", "2",
                                 "--size", "48x128"])
    assert result.exit_code == 0, result.output
    assert "RSTPReid" in result.output and "test" in result.output
    record = json.loads((out / "data_captions.json").read_text())[0]
    with Image.open(out / "imgs" / record["img_path"]) as image:
        assert image.size == (48, 128)


@pytest.mark.parametrize("args", [["nope", "--out", "x"], ["CUHK-PEDES", "--out", "x", "--size", "big"]])
def test_cli_user_errors_are_one_line(tmp_path, args):
    args = [a if a != "x" else str(tmp_path / "x") for a in args]
    result = CliRunner().invoke(cli, ["synth", *args])
    assert result.exit_code == 2
    assert "Traceback" not in result.output and result.output.count("\n") == 1
