"""The cached attribute component gives the same Docs as spaCy's attribute_ruler and lemmatizer, and stands aside
when the ruler's patterns read more than a token's word, tag and label."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tir.knowledge.graphs import cached_attributes
from tir.knowledge.graphs.spacy_backend import choose_model, load_spacy

spacy = pytest.importorskip("spacy")

REAL_STYLE_GOLD = Path(__file__).parent / "data" / "gold_graphs_real_style.jsonl"
EDGE_CASES = [
    "he is gonna cross the street , let's say he ain't got a bag and he's gotta go",  # multi-token patterns
    "a man  in a red\nshirt   and  blue jeans",  # whitespace tokens
    "",
    "A WOMAN WEARING A BLACK COAT",
    "the man is waering a balck jakcet and carying a bag",  # typos: words never seen before
]
COMPARED = ["ORTH", "TAG", "POS", "MORPH", "LEMMA", "DEP", "HEAD", "NORM"]


def texts() -> list[str]:
    gold = [json.loads(line)["caption"] for line in REAL_STYLE_GOLD.read_text().splitlines() if line.strip()]
    return gold + EDGE_CASES


def reference_pipeline():
    """load_spacy's pipeline with spaCy's own attribute_ruler and lemmatizer in place of the cached component."""
    nlp = load_spacy(None)
    nlp.remove_pipe(cached_attributes.COMPONENT)
    nlp.enable_pipe(cached_attributes.RULER)
    nlp.enable_pipe(cached_attributes.LEMMATIZER)
    return nlp


def annotations(docs) -> list[tuple]:
    return [(doc.to_array(COMPARED).tolist(), [t.lemma_ for t in doc], [str(t.morph) for t in doc]) for doc in docs]


def test_load_spacy_caches_attributes_and_uses_numpy_blas() -> None:
    nlp = load_spacy(None)
    assert nlp.pipe_names[-1] == cached_attributes.COMPONENT
    assert cached_attributes.RULER not in nlp.pipe_names and cached_attributes.LEMMATIZER not in nlp.pipe_names
    nodes = [node for name in ("tok2vec", "parser") for node in nlp.get_pipe(name).model.walk()]
    assert nodes and all(node.ops.use_blis is False for node in nodes)


def test_docs_identical_to_spacy_components_cold_and_warm() -> None:
    captions = texts()
    expected = annotations(reference_pipeline().pipe(captions))
    nlp = load_spacy(None)
    assert annotations(nlp.pipe(captions)) == expected  # cold: the cache fills while parsing
    component = nlp.get_pipe(cached_attributes.COMPONENT)
    assert len(component.cache) > 100 and component.starts  # "gon", "let", "ai" may begin a multi-token match
    assert annotations(nlp.pipe(captions)) == expected  # warm: every token's output comes from the cache


def test_multi_token_patterns_still_apply() -> None:
    doc = load_spacy(None)("i am gonna go and he ain't here")
    lemmas = {t.text: t.lemma_ for t in doc}
    assert lemmas["gon"] == "go" and lemmas["na"] == "to" and lemmas["ai"] == "be"


def test_multi_token_patterns_apply_when_each_word_is_cached() -> None:
    """'gon' and 'na' met apart (each cached with its one-token output) still get the lemmas of 'gonna'."""
    from spacy.attrs import DEP, ORTH, TAG

    nlp = load_spacy(None)
    component = nlp.get_pipe(cached_attributes.COMPONENT)
    text = "i am gonna go"
    doc = nlp.make_doc(text)
    for _, step in nlp.pipeline[:-1]:
        doc = step(doc)
    for key in doc.to_array([ORTH, TAG, DEP]).tolist():
        component._learn([tuple(key)])  # one word at a time, as if each came from another caption
    assert all(tuple(key) in component.cache for key in doc.to_array([ORTH, TAG, DEP]).tolist())
    lemmas = [t.lemma_ for t in component(doc)]
    assert lemmas == [t.lemma_ for t in reference_pipeline()(text)] and lemmas[2:4] == ["go", "to"]


def test_install_refuses_patterns_reading_other_attributes() -> None:
    nlp = spacy.load(choose_model(None), exclude=["ner"])
    nlp.get_pipe(cached_attributes.RULER).add([[{"NORM": "tee"}]], {"LEMMA": "t-shirt"})  # NORM is per token, not per word
    assert not cached_attributes.install(nlp)
    assert cached_attributes.COMPONENT not in nlp.pipe_names and nlp.pipe_names[-2:] == ["attribute_ruler", "lemmatizer"]


def test_install_refuses_ruler_setting_lexeme_attributes() -> None:
    nlp = spacy.load(choose_model(None), exclude=["ner"])
    nlp.get_pipe(cached_attributes.RULER).add([[{"LOWER": "tee"}]], {"NORM": "t-shirt"})
    assert not cached_attributes.install(nlp)


def test_cached_lemmas_survive_a_memory_zone() -> None:
    """Lemmas first seen inside nlp.memory_zone() (transient strings there) are still readable from the cache after."""
    nlp = load_spacy(None)
    with nlp.memory_zone():
        list(nlp.pipe(["the man is waering a balck jakcet"]))
    doc = nlp("the man is waering a balck jakcet")
    assert [t.lemma_ for t in doc] == [t.lemma_ for t in reference_pipeline()("the man is waering a balck jakcet")]
