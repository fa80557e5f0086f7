"""tir plan-masks: CLIP tokens with offsets, graph spans mapped to tokens, the stage and its checks."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
import torch
from click.testing import CliRunner

from tir.cli import cli
from tir.errors import UserError
from tir.knowledge.clip_tokens import ClipTokenizer
from tir.knowledge.mask_plans import Elements, build_plans, plan_arrays, require_plan_tokenizer
from tir.pipeline import store
from tir.pipeline.info import describe

torch.set_num_threads(1)

TRICKY = [
    "A man in a t-shirt, with his friend's bag.",
    "a black shirt and black shoes;black   bag",
    "She wears jeans.She carries a T-Shirt",
    "the woman's ALL-CAPS 16-year-old rock'n'roll 'sneakers' (white)",
    "caf\u00e9 \u201clogo\u201d &amp; stuff\tand\nnewline",
    "\u4e2d\u6587 text, emoji \U0001f600 ok",
    "<start_of_text> literal",
    "",
    "   padded   caption   ",
]


@pytest.fixture(scope="module")
def tokenizer() -> ClipTokenizer:
    return ClipTokenizer()


@pytest.fixture(scope="module")
def reference(tokenizer):
    return tokenizer.tokenizer  # open_clip's own SimpleTokenizer


def random_captions(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["a", "man", "woman", "t-shirt", "T-SHIRT", "jeans.", "she's", "don't", "bag,", "(red)", "16-year-old",
             "black/white", "\u00e9t\u00e9", "&", "&amp;", "shoes!!", "\u201cnice\u201d", "x", "backpack's", "o'clock", "  ",
             "\n", "line\r\nbreak", "\ttab", "\x0bvt", "\x00nul", "caf\u00e9s", "\u00c9T\u00c9"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(0, 60))) for _ in range(count)]


def synthetic_captions(count: int) -> list[str]:
    captions_module = pytest.importorskip("tir.pipeline.synth.captions")
    appearance = pytest.importorskip("tir.pipeline.synth.appearance")
    rng = random.Random(1)
    return [c.text for _ in range(count // 2) for c in captions_module.write_captions(appearance.sample_identity(rng), 2, rng)]


def test_ids_equal_open_clip(tokenizer, reference):
    captions = TRICKY + random_captions(1500)
    batch = tokenizer.encode_batch(captions)
    for i, caption in enumerate(captions):
        assert batch.ids[batch.offsets[i]:batch.offsets[i + 1]].tolist() == reference.encode(caption), caption


def test_ids_equal_open_clip_on_synthetic_captions(tokenizer, reference):
    captions = synthetic_captions(1000)
    batch = tokenizer.encode_batch(captions)
    for i, caption in enumerate(captions):
        assert batch.ids[batch.offsets[i]:batch.offsets[i + 1]].tolist() == reference.encode(caption), caption


def test_offsets_and_words(tokenizer):
    captions = TRICKY[:4]
    batch = tokenizer.encode_batch(captions)

    def pieces(i):
        sl = slice(batch.offsets[i], batch.offsets[i + 1])
        return [(captions[i][s:e], w) for s, e, w in zip(batch.starts[sl], batch.ends[sl], batch.words[sl])]

    assert pieces(0) == [("A", 0), ("man", 1), ("in", 2), ("a", 3), ("t", 4), ("-", 4), ("shirt", 4), (",", 5),
                         ("with", 6), ("his", 7), ("friend", 8), ("'s", 8), ("bag", 9), (".", 10)]
    assert [p for p, _ in pieces(1)] == ["a", "black", "shirt", "and", "black", "shoes", ";", "black", "bag"]
    assert pieces(2)[2:5] == [("jeans", 2), (".", 3), ("She", 4)]
    for i in range(len(captions)):  # words numbered densely from 0 in order
        words = batch.words[batch.offsets[i]:batch.offsets[i + 1]]
        assert words[0] == 0 and set(np.diff(words)) <= {0, 1}


def test_offsets_cover_the_original_text_of_cleaned_captions(tokenizer):
    caption = TRICKY[4]
    batch = tokenizer.encode_batch([caption])
    texts = [caption[s:e].strip() for s, e in zip(batch.starts, batch.ends)]
    assert texts[:5] == ["caf\u00e9", "\u201c", "logo", "\u201d", "&"] and "".join(texts[-2:]) == "newline"


def elements_of(captions: list[str], spec: list[tuple[int, int, int, str, int]]) -> Elements:
    """spec rows: (caption row, element number, level, text, occurrence of text in the caption)."""
    rows, numbers, levels, starts, ends = [], [], [], [], []
    for row, number, level, text, occurrence in spec:
        start = -1
        for _ in range(occurrence + 1):
            start = captions[row].index(text, start + 1)
        rows.append(row), numbers.append(number), levels.append(level), starts.append(start), ends.append(start + len(text))
    return Elements(*(np.asarray(a, np.int64) for a in (rows, numbers, levels, starts, ends)))


def test_plans_label_tokens_with_elements(tokenizer):
    captions = TRICKY[:3]
    elements = elements_of(captions, [
        (0, 0, 1, "man", 0), (0, 1, 1, "t-shirt", 0), (0, 2, 1, "bag", 0), (0, 3, 3, "with", 0),
        (1, 0, 1, "shirt", 0), (1, 1, 1, "shoes", 0), (1, 2, 2, "black", 0), (1, 3, 2, "black", 1),
        (2, 0, 1, "She", 0), (2, 1, 1, "jeans", 0), (2, 2, 1, "She", 1), (2, 3, 1, "T-Shirt", 0), (2, 4, 3, "carries", 0),
    ])
    plans = build_plans(captions, elements, tokenizer, 77)
    row = lambda f, i: getattr(plans, f)[plans.offsets[i]:plans.offsets[i + 1]].tolist()  # noqa: E731
    assert row("token_ids", 0)[0] == tokenizer.sot_id and row("token_ids", 0)[-1] == tokenizer.eot_id
    assert row("word_ids", 0)[0] == -1 and row("word_ids", 0)[-1] == -1
    # "A man in a t - shirt , with his friend 's bag ."
    assert row("element", 0)[1:-1] == [-1, 0, -1, -1, 1, 1, 1, -1, 3, -1, -1, -1, 2, -1]
    assert row("level", 0)[1:-1] == [0, 1, 0, 0, 1, 1, 1, 0, 3, 0, 0, 0, 1, 0]
    # repeated word "black": each occurrence its own element; the third is no element
    assert row("element", 1)[1:-1] == [-1, 2, 0, -1, 3, 1, -1, -1, -1]
    # punctuation glued to words: "jeans.She"
    assert row("element", 2)[1:-1] == [0, -1, 1, -1, 2, 4, -1, 3, 3, 3]
    assert plans.element_states == {"kept": 13, "cut": 0, "hidden": 0, "unanchored": 0}


def test_cut_keeps_end_token_and_counts_dropped_elements(tokenizer, reference):
    caption = "a man wearing " + " and ".join(["a red hat"] * 30) + " and a blue bag"
    elements = elements_of([caption], [(0, 0, 1, "man", 0), (0, 1, 2, "red", 0), (0, 2, 1, "bag", 0),
                                       (0, 3, 2, "blue", 0), (0, 4, 3, "wearing", 0)])
    plans = build_plans([caption], elements, tokenizer, 20)
    assert plans.token_ids.tolist() == reference([caption], context_length=20)[0].tolist()
    assert plans.element_states == {"kept": 3, "cut": 2, "hidden": 0, "unanchored": 0}
    assert plans.n_cut.tolist() == [2] and plans.n_elements.tolist() == [5]
    assert len(plans.token_ids) == 20 and plans.word_ids[-1] == -1 and plans.element.max() == 4


def test_nested_and_unanchored_elements(tokenizer):
    caption = "a man in high heels"
    spans = Elements(*(np.asarray(a, np.int64) for a in ([0, 0, 0, 0], [0, 1, 2, 3], [1, 1, 2, 3],
                                                          [2, 9, 9, -1], [5, 19, 13, -1])))
    plans = build_plans([caption], spans, tokenizer, 77)
    assert plans.element.tolist()[1:-1] == [-1, 0, -1, 2, 1]  # "high" narrower than "high heels"
    assert plans.element_states == {"kept": 3, "cut": 0, "hidden": 0, "unanchored": 1}


# ----------------------------------------------------------------------------- the stage
GRAPH_TYPES = {
    "objects": pa.list_(pa.struct([("id", pa.int16()), ("text", pa.string()), ("head", pa.string()),
                                   ("start", pa.int32()), ("end", pa.int32())])),
    "attributes": pa.list_(pa.struct([("object", pa.int16()), ("text", pa.string()), ("start", pa.int32()), ("end", pa.int32())])),
    "relations": pa.list_(pa.struct([("subject", pa.int16()), ("predicate", pa.string()), ("object", pa.int16()),
                                     ("start", pa.int32()), ("end", pa.int32())])),
}
CAPTIONS = ["A woman in a white t-shirt.", "He carries a black bag", "a man", "A girl with red shoes, jeans."]


def span(caption: str, text: str) -> dict:
    start = caption.index(text)
    return {"start": start, "end": start + len(text)}


def write_dataset(root, captions=CAPTIONS):
    folder = root / "RSTPReid"
    folder.mkdir(parents=True, exist_ok=True)
    raw = root / "raw.json"
    raw.write_text("{}")
    splits = ["train", "train", "test", "train"]
    pair_index = [0, 1, 0, 2]
    manifest = pa.table({"pair_index": pa.array(pair_index, pa.int64()),
                         "split": pa.array(splits).dictionary_encode(), "caption": captions})
    store.write_table(manifest, folder / "manifest.parquet", stage="prepare", options={}, inputs={"raw": raw})
    c = captions
    graphs = pa.table({
        "split": pa.array(["train", "train", "train"]).dictionary_encode(),
        "pair_index": pa.array([0, 1, 2], pa.int64()),
        "objects": pa.array([
            [{"id": 0, "text": "woman", "head": "woman", **span(c[0], "woman")},
             {"id": 1, "text": "t-shirt", "head": "t-shirt", **span(c[0], "t-shirt")}],
            [{"id": 0, "text": "He", "head": "man", **span(c[1], "He")}, {"id": 1, "text": "bag", "head": "bag", **span(c[1], "bag")}],
            [{"id": 0, "text": "girl", "head": "girl", **span(c[3], "girl")},
             {"id": 1, "text": "shoes", "head": "shoe", **span(c[3], "shoes")},
             {"id": 2, "text": "jeans", "head": "jeans", **span(c[3], "jeans")}],
        ], GRAPH_TYPES["objects"]),
        "attributes": pa.array([[{"object": 1, "text": "white", **span(c[0], "white")}],
                                [{"object": 1, "text": "black", **span(c[1], "black")}],
                                [{"object": 1, "text": "red", **span(c[3], "red")}]], GRAPH_TYPES["attributes"]),
        "relations": pa.array([[{"subject": 0, "predicate": "in", "object": 1, **span(c[0], "in")}],
                               [{"subject": 0, "predicate": "carry", "object": 1, **span(c[1], "carries")}],
                               [{"subject": 0, "predicate": "with", "object": 1, **span(c[3], "with")}]], GRAPH_TYPES["relations"]),
        "parser": pa.array(["test"] * 3).dictionary_encode(),
    })
    store.write_table(graphs, folder / "graphs.parquet", stage="parse-graphs", options={},
                      inputs={"manifest": folder / "manifest.parquet"})
    return folder


def test_stage_writes_fresh_plans_and_info(tmp_path, reference):
    folder = write_dataset(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["plan-masks", "rstpreid", "--manifests", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "kept 13" in result.output and "captions without a graph: 1" in result.output
    again = runner.invoke(cli, ["plan-masks", "RSTPReid", "--manifests", str(tmp_path)])
    assert "up to date" in again.output

    arrays = plan_arrays(folder / "mask_plans.parquet", "train", 77)
    assert arrays["pair_index"].tolist() == [0, 1, 2] and arrays["token_ids"].shape == (3, 77)
    expected = reference(CAPTIONS[:2] + CAPTIONS[3:], context_length=77)
    assert torch.equal(torch.from_numpy(arrays["token_ids"]), expected)
    # "a girl with red shoes , jeans ." -> elements: girl 0, shoes 1, jeans 2, red 3, with 4
    assert arrays["element"][2, 1:10].tolist() == [-1, 0, 4, 3, 1, -1, 2, -1, -1]
    assert arrays["level"][2, 1:10].tolist() == [0, 1, 3, 2, 1, 0, 1, 0, 0]
    assert require_plan_tokenizer(folder / "mask_plans.parquet", reference, 77)["stage"] == "plan-masks"
    with pytest.raises(UserError, match="context-length 64"):
        require_plan_tokenizer(folder / "mask_plans.parquet", reference, 64)
    text = describe(folder / "mask_plans.parquet")
    assert "tokens per level: none" in text and "kept 13 (100.0%)" in text and "vocabulary" in text


def test_stage_refuses_graphs_of_another_manifest(tmp_path):
    folder = write_dataset(tmp_path)
    raw = tmp_path / "raw.json"
    manifest = store.read_table(folder / "manifest.parquet")
    store.write_table(manifest.slice(0, 3), folder / "manifest.parquet", stage="prepare", options={}, inputs={"raw": raw})
    result = CliRunner().invoke(cli, ["plan-masks", "RSTPReid", "--manifests", str(tmp_path)])
    assert result.exit_code == 2 and f"tir parse-graphs RSTPReid --manifests {tmp_path} --force" in result.output
    assert result.output.count("\n") == 1


def test_stage_needs_graphs(tmp_path):
    write_dataset(tmp_path)
    (tmp_path / "RSTPReid" / "graphs.parquet").unlink()
    result = CliRunner().invoke(cli, ["plan-masks", "RSTPReid", "--manifests", str(tmp_path)])
    assert result.exit_code == 2 and "tir parse-graphs RSTPReid" in result.output
