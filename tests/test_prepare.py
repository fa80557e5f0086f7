"""`tir prepare` as a function: the manifest contract, every quirk and bad record, freshness."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tir.errors import UserError
from tir.pipeline import image_headers, store
from tir.pipeline.datasets import REGISTRY, get_spec
from tir.pipeline.info import describe
from tir.pipeline.prepare import MANIFEST_SCHEMA, REASONS, prepare_dataset

RAW = Path(__file__).parent / "data" / "raw"
FIXTURES = {  # dataset -> (fixture, file name under --root, image paths the test leaves out or breaks)
    "CUHK-PEDES": ("cuhk_pedes.json", "reid_raw.json"),
    "ICFG-PEDES": ("ICFG-PEDES.json", "ICFG-PEDES.json"),
    "RSTPReid": ("data_captions.json", "data_captions.json"),
}
MISSING = "test_query/p10_s1.jpg"
BROKEN = "train_query/p11_s1.jpg"


def write_images(root: Path, records: list, key: str, skip: tuple[str, ...] = (MISSING, BROKEN)) -> None:
    """Tiny real images for every usable path in ``records``; BROKEN gets bytes that are no image."""
    for k, record in enumerate(records):
        path = record.get(key) if isinstance(record, dict) else None
        if not isinstance(path, str) or path.startswith("/") or ".." in path or path in skip:
            continue
        target = root / "imgs" / path.replace("\\", "/")
        if target.exists():  # a duplicate path: the first record's image stays
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8 + k, 24 + k), (k * 10 % 255, 80, 120)).save(target)
    broken = root / "imgs" / BROKEN
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"this is not an image")


def dataset_root(tmp_path: Path, dataset: str, images: bool = True) -> Path:
    fixture, name = FIXTURES[dataset]
    root = tmp_path / dataset
    root.mkdir()
    shutil.copy(RAW / fixture, root / name)
    if images:
        records = json.loads((RAW / fixture).read_text(), strict=False)
        write_images(root, records, get_spec(dataset).image_key)
    return root


def raw_caption_count(path: Path) -> int:
    records = json.loads(path.read_text(encoding="utf-8-sig"), strict=False)
    return sum(
        (len(r["captions"]) if isinstance(r["captions"], list) else 1)
        for r in records
        if isinstance(r, dict) and "captions" in r
    )


def reasons(result) -> dict[tuple[int, int | None], str]:
    table = pq.read_table(result.rejects).to_pylist()
    return {(row["raw_index"], row["caption_index"]): row["reason"] for row in table}


# ----------------------------------------------------------------------------- the three formats
@pytest.mark.parametrize("dataset", list(FIXTURES))
@pytest.mark.parametrize("check_images", [True, False])
def test_nothing_vanishes(tmp_path, dataset, check_images):
    root = dataset_root(tmp_path, dataset)
    result = prepare_dataset(dataset, root, out=tmp_path / "out", check_images=check_images, jobs=1)
    manifest = pq.read_table(result.manifest)
    rejects = pq.read_table(result.rejects)
    raw = raw_caption_count(root / FIXTURES[dataset][1])
    assert manifest.num_rows + sum(rejects.column("captions").to_pylist()) == raw
    assert result.stats["raw"]["captions"] == raw
    assert result.stats["kept_captions"] + result.stats["rejected_captions"] == raw
    assert set(rejects.column("reason").to_pylist()) <= set(REASONS)


def test_cuhk_manifest_contract(tmp_path):
    root = dataset_root(tmp_path, "CUHK-PEDES")
    result = prepare_dataset("cuhk-pedes", root, out=tmp_path / "out", jobs=1)
    table = pq.read_table(result.manifest)
    assert table.schema.remove_metadata() == MANIFEST_SCHEMA
    rows = table.to_pylist()
    # raw order kept: records in JSON order, captions in list order, pair_index counting per split
    assert [(r["split"], r["raw_id"], r["caption_index"]) for r in rows[:4]] == [
        ("train", 1, 0), ("train", 1, 1), ("train", 1, 0), ("train", 2, 1)
    ]
    for split in ("train", "val", "test"):
        mine = [r for r in rows if r["split"] == split]
        assert [r["pair_index"] for r in mine] == list(range(len(mine)))
        pids = [r["pid"] for r in mine]
        assert sorted(set(pids)) == list(range(len(set(pids))))  # contiguous 0..n-1
        assert pids == sorted(pids)  # in order of first appearance (fixture ids increase)
    first = rows[0]
    assert first["caption_raw"] == "A woman in a  white shirt and blue jeans.\n"
    assert first["caption"] == "A woman in a white shirt and blue jeans."
    assert rows[1]["caption"] == "She wears a black bag. Her shoes are white."
    assert (first["width"], first["height"]) == (8, 24)
    assert rows[-1]["caption"] == "A caption with a literal tab."
    ten = [r for r in rows if r["image_path"] == "CUHK03/0012_b.png"]
    assert [r["caption_index"] for r in ten] == list(range(10))
    assert {r["pid"] for r in rows if r["raw_id"] == 12 and r["split"] == "test"} == {ten[0]["pid"]}
    stats = json.loads(result.stats_file.read_text())
    assert stats["splits"]["train"] == {"ids": 2, "images": 3, "captions": 4}
    assert stats["quirks"]["captions_as_string"] == 1


def test_pandas_reads_documented_dtypes(tmp_path):
    root = dataset_root(tmp_path, "CUHK-PEDES")
    result = prepare_dataset("CUHK-PEDES", root, out=tmp_path / "out", jobs=1)
    frame = pd.read_parquet(result.manifest)
    expected = {"pair_index": "int64", "raw_id": "int64", "pid": "int32", "image_index": "int32",
                "caption_index": "int16", "width": "int32", "height": "int32"}
    assert {c: str(frame[c].dtype) for c in expected} == expected
    assert str(frame["split"].dtype) == "category"
    unchecked = prepare_dataset("CUHK-PEDES", root, out=tmp_path / "plain", check_images=False)
    nullable = pd.read_parquet(unchecked.manifest, dtype_backend="numpy_nullable")
    assert str(nullable["width"].dtype) == "Int32" and nullable["width"].isna().all()
    assert str(nullable["image_path"].dtype) == "string"


def test_icfg_has_no_val_and_accepts_both_names(tmp_path):
    root = dataset_root(tmp_path, "ICFG-PEDES")
    (root / "ICFG-PEDES.json").rename(root / "ICFG_PEDES.json")
    result = prepare_dataset("icfg-pedes", root, out=tmp_path / "out", jobs=1)
    assert result.stats["annotations"].endswith("ICFG_PEDES.json")
    frame = pd.read_parquet(result.manifest)
    assert set(frame["split"]) == {"train", "test"}
    assert frame.loc[frame["raw_id"] == 9, "split"].tolist() == ["test"]
    assert "test/0007/0007_002_03_0302afternoon_0005_0.jpg" in set(frame["image_path"])  # backslashes -> POSIX
    assert "test/0012/0012.jpg" not in set(frame["image_path"])  # its only caption is whitespace
    assert any("'val' x1" in w and "no val" in w for w in result.warnings)
    assert reasons(result) == {(6, None): "bad_id", (7, None): "missing_key", (8, 0): "empty_caption"}


def test_rstpreid_img_path_and_cjk(tmp_path):
    root = dataset_root(tmp_path, "RSTPReid")
    result = prepare_dataset("rstpreid", root, out=tmp_path / "out", jobs=1)
    frame = pd.read_parquet(result.manifest)
    assert frame.loc[1, "image_path"] == "0000_c14_0001.jpg"
    assert frame.loc[2, "caption"].startswith("这是一个女人.")
    assert frame.loc[frame["raw_id"] == 10, "split"].tolist() == ["val", "val"]
    assert reasons(result) == {(6, None): "bad_path", (7, None): "duplicate_image"}
    assert result.stats["splits"]["val"] == {"ids": 2, "images": 2, "captions": 4}


def test_caption_all_json_is_found(tmp_path):
    root = dataset_root(tmp_path, "CUHK-PEDES", images=False)
    (root / "reid_raw.json").rename(root / "caption_all.json")
    result = prepare_dataset("CUHK-PEDES", root, out=tmp_path / "out", check_images=False)
    assert result.stats["annotations"].endswith("caption_all.json")


# ----------------------------------------------------------------------------- bad records, one each
GOOD = {"split": "train", "id": 1, "file_path": "cam_a/ok.png", "captions": ["A good caption."]}
BAD_RECORDS = {
    "missing_key": ({"split": "train", "id": 2, "captions": ["no path"]}, "has no file_path"),
    "bad_id": ({**GOOD, "id": "two", "file_path": "cam_a/2.png"}, 'id "two", not an integer'),
    "bad_path_absolute": ({**GOOD, "id": 2, "file_path": "/tmp/2.png"}, "is absolute"),
    "bad_path_escapes": ({**GOOD, "id": 2, "file_path": "cam_a/../../2.png"}, "escapes the image root"),
    "duplicate_image": ({**GOOD, "id": 2}, "already used by record 0"),
    "bad_captions": ({**GOOD, "file_path": "cam_a/2.png", "captions": {"a": 1}}, "captions of type dict"),
    "no_captions": ({**GOOD, "file_path": "cam_a/2.png", "captions": []}, "empty captions list"),
    "not_a_record": (["a", "list"], "is a JSON list, not an object"),
    "bad_id_overflow": ({**GOOD, "id": 2**70, "file_path": "cam_a/2.png"}, "within int64"),
    "bad_id_overflow_text": ({**GOOD, "id": "9" * 25, "file_path": "cam_a/2.png"}, "within int64"),
    "bad_id_superscript": ({**GOOD, "id": "\u00b2", "file_path": "cam_a/2.png"}, "not an integer of ASCII digits"),
    "bad_id_arabic_digits": ({**GOOD, "id": "\u0661\u0662", "file_path": "cam_a/2.png"}, "not an integer of ASCII digits"),
    "bad_path_surrogate": ({**GOOD, "id": 2, "file_path": "cam_a/\udc80.png"}, "lone surrogate"),
    "too_many_captions": ({**GOOD, "file_path": "cam_a/2.png", "captions": ["c"] * 32_768}, "32,768 captions"),
}


def run_records(tmp_path: Path, records: list, check_images: bool = False, raw_text: str | None = None):
    root = tmp_path / "root"
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    (root / "reid_raw.json").write_text(raw_text if raw_text is not None else json.dumps(records))
    return prepare_dataset("CUHK-PEDES", root, out=tmp_path / "out", check_images=check_images, jobs=1, force=True)


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_bad_record_is_rejected_the_rest_kept(tmp_path, case):
    bad, fragment = BAD_RECORDS[case]
    result = run_records(tmp_path, [GOOD, bad, {**GOOD, "id": 3, "file_path": "cam_b/3.png"}])
    rejects = pq.read_table(result.rejects).to_pylist()
    assert len(rejects) == 1
    assert rejects[0]["reason"] == case.split("_")[0] + "_" + case.split("_")[1] if case.startswith("bad_") else case
    assert rejects[0]["raw_index"] == 1 and fragment in rejects[0]["message"]
    assert json.loads(rejects[0]["raw_json"]) == bad
    assert pd.read_parquet(result.manifest)["raw_id"].tolist() == [1, 3]


def test_captions_as_string_is_one_caption(tmp_path):
    result = run_records(tmp_path, [{**GOOD, "captions": "Just  one\ncaption."}])
    frame = pd.read_parquet(result.manifest)
    assert frame["caption"].tolist() == ["Just one caption."] and frame["caption_index"].tolist() == [0]
    assert result.stats["quirks"]["captions_as_string"] == 1
    assert any("captions as a string" in w for w in result.warnings)


@pytest.mark.parametrize("caption", ["", "   ", "\r\n\t"])
def test_empty_caption_is_rejected(tmp_path, caption):
    result = run_records(tmp_path, [{**GOOD, "captions": ["kept", caption, "kept too"]}])
    assert reasons(result) == {(0, 1): "empty_caption"}
    assert pd.read_parquet(result.manifest)["caption_index"].tolist() == [0, 2]


def test_caption_with_a_lone_surrogate_is_rejected(tmp_path):
    text = json.dumps([{**GOOD, "captions": ["kept", "bad \udc80 text"]}])
    result = run_records(tmp_path, [], raw_text=text)
    assert reasons(result) == {(0, 1): "bad_text"}
    assert pd.read_parquet(result.manifest)["caption"].tolist() == ["kept"]


def test_image_header_past_the_decompression_bomb_limit_is_rejected(tmp_path):
    records = [GOOD, {**GOOD, "id": 2, "file_path": "cam_a/bomb.bmp"}]
    write_images(tmp_path / "root", records, "file_path", skip=("cam_a/bomb.bmp",))
    # a 24-bit BMP header claiming 50,000 x 50,000 pixels (no pixel data)
    header = struct.pack("<IiiHHIIiiII", 40, 50_000, 50_000, 1, 24, 0, 16, 2835, 2835, 0, 0)
    (tmp_path / "root" / "imgs" / "cam_a" / "bomb.bmp").write_bytes(b"BM" + struct.pack("<IHHI", 70, 0, 0, 54) + header + bytes(16))
    result = run_records(tmp_path, records, check_images=True)
    rejects = pq.read_table(result.rejects).to_pylist()
    assert [(r["raw_index"], r["reason"]) for r in rejects] == [(1, "unreadable_image")]
    assert "decompression-bomb" in rejects[0]["message"]


def test_non_string_caption_is_rejected(tmp_path):
    result = run_records(tmp_path, [{**GOOD, "captions": ["kept", None]}])
    assert reasons(result) == {(0, 1): "bad_caption"}


def test_unknown_split_values_go_to_val_with_a_warning(tmp_path):
    records = [{**GOOD, "split": s, "id": i, "file_path": f"x/{i}.png"} for i, s in enumerate(["train", "dev", "Test", "dev"])]
    result = run_records(tmp_path, records)
    assert pd.read_parquet(result.manifest)["split"].tolist() == ["train", "val", "val", "val"]
    warning = next(w for w in result.warnings if "mapped to val" in w)
    assert "'dev' x2" in warning and "'Test' x1" in warning


def test_ids_given_as_text_are_accepted(tmp_path):
    result = run_records(tmp_path, [{**GOOD, "id": "17"}])
    assert pd.read_parquet(result.manifest)["raw_id"].tolist() == [17]


def test_missing_and_unreadable_images_are_rejected(tmp_path):
    records = [GOOD, {**GOOD, "id": 2, "file_path": MISSING}, {**GOOD, "id": 3, "file_path": BROKEN, "captions": ["a", "b"]}]
    write_images(tmp_path / "root", records, "file_path")
    result = run_records(tmp_path, records, check_images=True)
    rejects = pq.read_table(result.rejects).to_pylist()
    assert [(r["raw_index"], r["reason"], r["captions"]) for r in rejects] == [(1, "missing_image", 1), (2, "unreadable_image", 2)]
    assert MISSING in rejects[0]["message"]
    assert pd.read_parquet(result.manifest)["raw_id"].tolist() == [1]


def test_parallel_header_reading_matches_serial(tmp_path, monkeypatch):
    root = dataset_root(tmp_path, "CUHK-PEDES")
    serial = pd.read_parquet(prepare_dataset("CUHK-PEDES", root, out=tmp_path / "a", jobs=1).manifest)
    monkeypatch.setattr(image_headers, "PARALLEL_MIN", 0)
    parallel = pd.read_parquet(prepare_dataset("CUHK-PEDES", root, out=tmp_path / "b", jobs=2).manifest)
    pd.testing.assert_frame_equal(serial, parallel)


# ----------------------------------------------------------------------------- file-level problems
FILE_PROBLEMS = {
    "not_json": ("this is not json", "not valid JSON at line 1 column 1"),
    "truncated": ('[{"id": 1, "split": "train"}, {"id": 2, "capt', "truncated"),
    "truncated_between_records": ('[{"id": 1}', "truncated"),
    "not_a_list": ('{"annotations": []}', "top level is a JSON object, expected a list"),
    "empty": ("  \n", "empty"),
    "bad_separator": ('[{"id": 1} {"id": 2}]', "line 1 column 12 after record 0"),
    "extra_data": ("[] []", "extra data after the list"),
    "bad_record": ('[{"id": 1},\n {"id": 2,}]', "line 2 column 11 in record 1"),
    "nested_too_deeply": ("[" + "[" * 100_000 + "]" * 100_001, "record 0 nests JSON arrays/objects too deeply"),
}


@pytest.mark.parametrize("case", list(FILE_PROBLEMS))
def test_file_level_problem_is_a_user_error(tmp_path, case):
    text, fragment = FILE_PROBLEMS[case]
    with pytest.raises(UserError) as error:
        run_records(tmp_path, [], raw_text=text)
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / "root" / "reid_raw.json") in message
    assert fragment in message and "--annotations" in message


@pytest.mark.parametrize("raw", [b'["\xff"]', json.dumps([GOOD]).encode()[:-2] + b', "processed_tokens": [["\xff"]]}]'])
def test_not_utf8_is_a_user_error(tmp_path, raw):
    """Also where the bad byte sits in a key prepare never decodes."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "reid_raw.json").write_bytes(raw)
    with pytest.raises(UserError, match="not UTF-8"):
        prepare_dataset("CUHK-PEDES", root, check_images=False, out=tmp_path / "out")


def test_no_annotation_file_lists_the_names_looked_for(tmp_path):
    with pytest.raises(UserError, match="looked for reid_raw.json, caption_all.json"):
        prepare_dataset("CUHK-PEDES", tmp_path, out=tmp_path / "out")


def test_missing_image_folder_is_a_user_error(tmp_path):
    shutil.copy(RAW / "data_captions.json", tmp_path / "data_captions.json")
    with pytest.raises(UserError, match="--no-check-images"):
        prepare_dataset("RSTPReid", tmp_path, out=tmp_path / "out")


def test_bom_and_crlf_are_accepted(tmp_path):
    text = "\ufeff" + json.dumps([GOOD], indent=1).replace("\n", "\r\n")
    result = run_records(tmp_path, [], raw_text=text)
    assert result.stats["kept_captions"] == 1


# ----------------------------------------------------------------------------- freshness, provenance, info
def test_freshness_and_force(tmp_path):
    root = dataset_root(tmp_path, "RSTPReid")
    out = tmp_path / "out"
    first = prepare_dataset("RSTPReid", root, out=out, jobs=1)
    assert not first.up_to_date
    stamp = first.manifest.stat().st_mtime_ns
    again = prepare_dataset("RSTPReid", root, out=out, jobs=1)
    assert again.up_to_date and again.manifest.stat().st_mtime_ns == stamp and again.stats == first.stats
    assert not prepare_dataset("RSTPReid", root, out=out, jobs=1, force=True).up_to_date
    assert not prepare_dataset("RSTPReid", root, out=out, check_images=False).up_to_date  # options changed
    one = '[{"img_path": "x.jpg", "id": 1, "split": "train", "captions": ["a"]}]'
    (root / "data_captions.json").write_text(one)
    rebuilt = prepare_dataset("RSTPReid", root, out=out, check_images=False)
    assert not rebuilt.up_to_date and rebuilt.stats["kept_captions"] == 1
    provenance = store.read_provenance(rebuilt.manifest)
    assert provenance["stage"] == "prepare" and provenance["inputs"]["annotations"]["size"] == len(one)
    (root / "data_captions.json").write_text("[]")
    with pytest.raises(UserError, match="holds no records, so the manifest would be empty"):
        prepare_dataset("RSTPReid", root, out=out, check_images=False)


def test_info_summarises_a_manifest(tmp_path):
    root = dataset_root(tmp_path, "RSTPReid")
    result = prepare_dataset("RSTPReid", root, out=tmp_path / "out", jobs=1)
    text = describe(result.manifest)
    assert "RSTPReid manifest (image sizes read from image headers)" in text
    assert any(line.split()[:4] == ["train", "2", "3", "6"] for line in text.splitlines())


def test_info_summarises_rejects_and_a_damaged_stats_json_is_rebuilt(tmp_path):
    result = run_records(tmp_path, [GOOD, {**GOOD, "id": "two", "file_path": "cam_a/2.png"}])
    text = describe(result.rejects)
    assert any(line.split() == ["bad_id", "1", "1"] for line in text.splitlines())
    result.stats_file.write_text('{"splits": ' * 50_000)  # damaged, and deeper than Python's JSON reader goes
    with pytest.raises(UserError, match="cannot read JSON"):
        describe(result.stats_file)
    again = prepare_dataset("CUHK-PEDES", tmp_path / "root", out=tmp_path / "out", check_images=False, jobs=1)
    assert not again.up_to_date and json.loads(again.stats_file.read_text())["kept_captions"] == 1


def test_count_warning_lists_every_difference(tmp_path):
    result = run_records(tmp_path, [GOOD])
    warning = next(w for w in result.warnings if "published" in w)
    assert "train captions 1 (published 68,126)" in warning and "test ids 0 (published 1,000)" in warning
    assert warning.count("(published") == 9


def test_registry_declares_every_dataset():
    assert set(REGISTRY) == {"CUHK-PEDES", "ICFG-PEDES", "RSTPReid"}
    assert get_spec("icfg-pedes").annotation_files == ("ICFG-PEDES.json", "ICFG_PEDES.json")
    assert get_spec("RSTPREID").image_key == "img_path"


# ----------------------------------------------------------------------------- outputs as one unit
def test_outputs_of_an_interrupted_run_are_never_up_to_date(tmp_path, monkeypatch):
    first = run_records(tmp_path, [GOOD])
    source = tmp_path / "root" / "reid_raw.json"
    original = source.read_bytes()
    write_table = store.write_table

    def disk_full_at_the_manifest(table, path, **kwargs):
        if Path(path).name == "manifest.parquet":
            raise UserError("cannot write (No space left on device); the disk is full", path=path)
        return write_table(table, path, **kwargs)

    monkeypatch.setattr(store, "write_table", disk_full_at_the_manifest)
    source.write_text(json.dumps([GOOD, {**GOOD, "id": 2, "file_path": "cam_a/2.png"}]))
    with pytest.raises(UserError, match="disk is full"):
        prepare_dataset("CUHK-PEDES", tmp_path / "root", out=tmp_path / "out", check_images=False, jobs=1)
    monkeypatch.setattr(store, "write_table", write_table)
    source.write_bytes(original)  # back to the input the manifest was made from
    os.utime(source, ns=(first.manifest.stat().st_mtime_ns,) * 2)
    again = prepare_dataset("CUHK-PEDES", tmp_path / "root", out=tmp_path / "out", check_images=False, jobs=1)
    assert not again.up_to_date  # stats.json and rejects.parquet were of the other input
    assert json.loads(again.stats_file.read_text())["splits"]["train"]["images"] == 1
    assert prepare_dataset("CUHK-PEDES", tmp_path / "root", out=tmp_path / "out", check_images=False, jobs=1).up_to_date


def test_a_second_writer_is_refused_and_stale_temporaries_are_removed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".manifest.parquet.k1ll3d.tmp"
    stale.write_bytes(bytes(1000))
    other = out / ".graphs.parquet.xyz.tmp"  # another stage's file: not prepare's to remove
    other.write_bytes(b"x")
    holder = subprocess.Popen(  # another process in the middle of a prepare into the same folder
        [sys.executable, "-c", "import sys; from tir.pipeline import store\n"
         f"with store.stage_lock({str(out)!r}, 'prepare'):\n print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match="another `tir prepare` is writing to this folder"):
            run_records(tmp_path, [GOOD])
    finally:
        holder.communicate("")
    assert stale.exists()
    run_records(tmp_path, [GOOD])
    assert not stale.exists() and other.exists()
