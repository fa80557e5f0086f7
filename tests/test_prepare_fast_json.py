"""prepare's fast readers (msgspec, typed columns or named fields) give exactly what the standard-library
reader gives, or step aside."""

from __future__ import annotations

import gc
import json
import random
import shutil
import threading
import weakref
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tir.pipeline import prepare
from tir.pipeline.raw_json import MISSING, RecordColumns, decode_columns, decode_fields, gc_paused, record_texts

RAW = Path(__file__).parent / "data" / "raw"
GOOD = {"split": "train", "id": 1, "file_path": "cam_a/ok.png", "captions": ["A good caption."]}
KEYS = ("file_path", "id", "split", "captions")


def crafted_text() -> str:
    """Pretty-printed records with every reject the reader makes and the quirks it counts."""
    records = [
        GOOD,
        {"split": "train", "id": 2, "captions": ["no path"]},
        {**GOOD, "id": "two", "file_path": "cam_a/2.png"},
        {**GOOD, "id": 2**70, "file_path": "cam_a/3.png"},
        {**GOOD, "id": 4, "file_path": "/abs/4.png"},
        {**GOOD, "id": 5},
        {**GOOD, "id": 6, "file_path": "cam_a/6.png", "captions": {"a": 1}},
        {**GOOD, "id": 7, "file_path": "cam_a/7.png", "captions": []},
        {**GOOD, "id": 8, "file_path": "cam_a/8.png", "captions": ["kept", "", "  \t", None, "  two  spaces ", "caf\u00e9 \u3000 wide"]},
        {**GOOD, "id": "9", "file_path": "cam_a\\9.png", "captions": "one  string\ncaption", "processed_tokens": [["x"]]},
        {**GOOD, "id": 10, "split": "dev", "file_path": "cam_b/10.png", "captions": ["Line\u2028sep", "\u00a0nbsp\u00a0"]},
        {**GOOD, "id": 11, "split": 3, "file_path": "cam_b/11.png", "captions": ["lower case run on with a typo sholder"]},
    ]
    text = json.dumps(records, indent=2, ensure_ascii=False)
    # a repeated key (the last one counts) and an escaped key name, as the standard library reads them
    return text.replace('"id": 1,', '"id": 99, "id": 1,', 1).replace('"captions": [\n      "lower', '"capt\\u0069ons": [\n      "lower', 1)


def common_shape_text() -> str:
    """Records that all have the common types (so the typed column reader takes them) with every reject and
    quirk such records can have: unusual, refused and repeated paths, no or too many captions, empty and
    whitespace-only captions, captions to normalise, a split the dataset lacks."""
    records = [
        GOOD,
        {**GOOD, "id": 2, "file_path": "/abs/2.png"},
        {**GOOD, "id": 3, "file_path": "cam_a/../../3.png"},
        {**GOOD, "id": 4, "file_path": "cam_a\\4.png", "captions": ["  both  ends  ", "tab\there"]},
        {**GOOD, "id": 5, "file_path": "./cam_a//5.png"},
        {**GOOD, "id": 6, "file_path": "cam_a/4.png"},  # the path record 3 becomes
        {**GOOD, "id": 7},  # repeats record 0's path
        {**GOOD, "id": 8, "file_path": "cam_a/8.png", "captions": []},
        {**GOOD, "id": 9, "file_path": "cam_a/9.png", "captions": ["x"] * (prepare.MAX_CAPTIONS + 1)},
        {**GOOD, "id": 10, "file_path": "cam_a/10.png", "captions": ["", "kept", " \u3000 ", "caf\u00e9  au lait"]},
        {**GOOD, "id": 11, "file_path": "cam_a/11.png", "captions": ["", "  "]},  # every caption empty
        {**GOOD, "id": 12, "file_path": " ", "split": "dev"},
        {**GOOD, "id": -(2**63), "file_path": "caf\u00e9/12.png", "split": "dev", "processed_tokens": [["x"]]},
        {**GOOD, "id": 2**63 - 1, "file_path": "cam_b/13.png ", "split": "query"},
        {**GOOD, "id": 14, "file_path": "", "split": "dev"},
    ]
    return json.dumps(records, ensure_ascii=False)


def run(tmp_path: Path, name: str, text: str, dataset: str = "CUHK-PEDES", file: str = "reid_raw.json", exact: bool = False,
        monkeypatch: pytest.MonkeyPatch | None = None):
    root = tmp_path / name
    (root / "imgs").mkdir(parents=True)
    (root / file).write_text(text, encoding="utf-8")
    if exact:
        monkeypatch.setattr(prepare, "decode_columns", lambda text, keys: None)
        monkeypatch.setattr(prepare, "decode_fields", lambda text, keys: None)
    try:
        result = prepare.prepare_dataset(dataset, root, out=root / "out", check_images=False, jobs=1, force=True)
    finally:
        if exact:
            monkeypatch.undo()
    stats = dict(result.stats)
    stats.pop("unit"), stats.pop("annotations")
    tables = [pq.read_table(path).replace_schema_metadata(None) for path in (result.manifest, result.rejects)]
    return tables, stats


@pytest.mark.parametrize("case", ["crafted", "common shape", "common shape, ASCII", "CUHK-PEDES", "ICFG-PEDES", "RSTPReid"])
def test_fast_and_exact_readers_agree(tmp_path, monkeypatch, case):
    fixtures = {"CUHK-PEDES": ("cuhk_pedes.json", "reid_raw.json"), "ICFG-PEDES": ("ICFG-PEDES.json", "ICFG-PEDES.json"),
                "RSTPReid": ("data_captions.json", "data_captions.json")}
    crafted = {"crafted": crafted_text(), "common shape": common_shape_text(),
               "common shape, ASCII": json.dumps(json.loads(common_shape_text()), indent=1)}
    dataset, (fixture, file) = ("CUHK-PEDES", (None, "reid_raw.json")) if case in crafted else (case, fixtures[case])
    text = crafted[case] if case in crafted else (RAW / fixture).read_text(encoding="utf-8")
    fast, fast_stats = run(tmp_path, "fast", text, dataset, file)
    exact, exact_stats = run(tmp_path, "exact", text, dataset, file, exact=True, monkeypatch=monkeypatch)
    assert fast[0].equals(exact[0]) and fast[1].equals(exact[1])
    assert fast_stats == exact_stats
    if case == "crafted":
        assert decode_fields(text, KEYS) is not None  # the fast path really ran
        rejects = fast[1].to_pylist()
        assert {r["reason"] for r in rejects} >= {"missing_key", "bad_id", "bad_path", "duplicate_image", "bad_captions",
                                                  "no_captions", "empty_caption", "bad_caption"}
        for row in rejects:  # each raw_json is the record's exact text in the file, indentation and all
            assert row["raw_json"] in text and isinstance(json.loads(row["raw_json"]), dict)
        assert fast_stats["quirks"]["captions_whitespace_normalised"] >= 3
        caption = fast[0].column("caption").to_pylist()
        assert "two spaces" in caption and "caf\u00e9 wide" in caption and "Line sep" in caption and "nbsp" in caption
    if case.startswith("common shape"):
        assert decode_columns(text, KEYS) is not None  # the typed column reader really ran
        rejects = fast[1].to_pylist()
        assert {r["reason"] for r in rejects} == {"bad_path", "duplicate_image", "no_captions", "too_many_captions", "empty_caption"}
        assert [r["raw_index"] for r in rejects if r["reason"] == "duplicate_image"] == [5, 6]
        assert fast_stats["quirks"]["unknown_split_values"] == {"dev": 3, "query": 1}
        assert "cam_a/4.png" in fast[0].column("image_path").to_pylist()


@pytest.mark.parametrize("text", [
    '{"a": 1}',  # not a list
    '[{"id": 1}, [1, 2]]',  # an element that is not an object
    '[{"id": 1, "captions": ["a\tb"]}]',  # a raw tab inside a string (the standard library reader allows it)
    '[{"id": 1, "captions": ["\\ud800"]}]',  # a lone surrogate escape
    '[{"id": 1, "x": NaN}]',  # NaN, even in a key that is skipped
    '[{"id": 1e400}]',  # a number out of float range
    '[{"id": 1},]',  # a trailing comma
    '[{"id": 1}] x',  # data after the list
    '[{"x": ' + "[" * 5000 + "]" * 5000 + "}]",  # nesting too deep
])
def test_fast_reader_steps_aside_for_what_it_cannot_read_exactly(text):
    assert decode_fields(text, KEYS) is None
    assert decode_columns(text, KEYS) is None


@pytest.mark.parametrize("change", [{"id": "1"}, {"id": 1.0}, {"id": True}, {"id": 2**63}, {"captions": "one"},
                                    {"captions": ["a", None]}, {"split": None}, {"file_path": 3}, {"id": None}])
def test_typed_column_reader_steps_aside_for_uncommon_shapes(change):
    assert decode_columns(json.dumps([GOOD, GOOD]), KEYS) is not None
    assert decode_columns(json.dumps([GOOD, {**GOOD, **change}]), KEYS) is None
    assert decode_columns(json.dumps([GOOD, {key: value for key, value in GOOD.items() if key != "split"}]), KEYS) is None


def test_fast_reader_values_and_record_texts():
    text = '[ {"captions": ["a"], "id": 1, "id": 2, "processed_tokens": [["a"]]} ,\n  {"file_path": "p", "split": null} ]'
    assert list(decode_fields(text, KEYS)) == [(MISSING, 2, MISSING, ["a"]), ("p", MISSING, None, MISSING)]
    assert record_texts(text, [1]) == {1: '{"file_path": "p", "split": null}'}


def test_only_captions_that_can_change_are_normalised_in_python():
    rng = random.Random(0)
    alphabet = ["a", "b", " ", "\t", "\u00e9", "\x1f", "\u3000", "\n", "x", "\x7f"]
    for _ in range(200):
        captions = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(rng.randint(1, 30))]
        captions = [c for c in captions if c.strip()] or ["a"]
        array = pa.array(captions)
        for block in (1, 3, 7, 1 << 22):
            flagged = set(prepare._needs_normalising(array, block).tolist())
            changing = {k for k, c in enumerate(captions) if " ".join(c.split()) != c}
            assert changing <= flagged
            assert all(not c.isascii() or not c.isprintable() for k, c in enumerate(captions) if k in flagged - changing)
        assert {k + 1 for k in prepare._needs_normalising(array.slice(1), 3).tolist()} >= {
            k for k, c in enumerate(captions) if k and " ".join(c.split()) != c}


def test_decoded_records_are_freed_in_a_second_thread_while_the_body_runs():
    class Record:
        pass

    records = [Record() for _ in range(10)]
    alive = [weakref.ref(record) for record in records]
    parsed = prepare._Parsed(split=["train"] * 10, raw_id=list(range(10)))
    parsed.decoded = RecordColumns(image=records, raw_id=parsed.raw_id, split=parsed.split, captions=[["a"]] * 10)
    del records
    lists = parsed.release()
    assert parsed.decoded is None and parsed.split == [] and parsed.raw_id == [] and len(lists) == 10
    with prepare._freed_meanwhile(lists, piece=3):
        inside = threading.current_thread()
    assert not any(ref() for ref in alive) and lists == [] and inside is threading.main_thread()


def test_whitespace_shortcut_matches_split_and_join():
    rng = random.Random(1)
    alphabet = ["a", "b", " ", "  ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\u00a0", "\u3000", "\u2028", "\u00e9", "\x7f", "\x00"]
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        assert prepare._collapse_whitespace(text) == " ".join(text.split()), repr(text)


def test_gc_paused_restores_the_collector_as_it_was():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), gc_paused():
        raise ValueError
    assert gc.isenabled()
