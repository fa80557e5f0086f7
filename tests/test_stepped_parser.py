"""The stepped parser gives the same Docs as spaCy's compiled greedy parser, and stands aside for parsers whose
model or search it does not reproduce."""

from __future__ import annotations

import pytest

from tir.knowledge.graphs import stepped_parser
from tir.knowledge.graphs.spacy_backend import choose_model, load_spacy

from test_cached_attributes import texts

spacy = pytest.importorskip("spacy")

COMPARED = ["HEAD", "DEP", "SENT_START", "TAG", "LEMMA"]


def parses(docs) -> list[list]:
    return [doc.to_array(COMPARED).tolist() for doc in docs]


def reference_pipeline():
    """load_spacy's pipeline with spaCy's own parser in place of the stepped one."""
    nlp = load_spacy(None)
    nlp.remove_pipe(stepped_parser.COMPONENT)
    nlp.enable_pipe(stepped_parser.PARSER)
    return nlp


def test_load_spacy_steps_the_parser() -> None:
    nlp = load_spacy(None)
    assert stepped_parser.COMPONENT in nlp.pipe_names and stepped_parser.PARSER not in nlp.pipe_names
    assert nlp.pipe_names.index(stepped_parser.COMPONENT) > nlp.pipe_names.index("tagger")


@pytest.mark.parametrize("batch_size", [1, 7, 128])
def test_docs_identical_to_spacy_parser(batch_size) -> None:
    captions = texts() * 2  # batches of mixed lengths, empty and whitespace-only Docs among them
    expected = parses(reference_pipeline().pipe(captions, batch_size=batch_size))
    nlp = load_spacy(None)
    assert parses(nlp.pipe(captions, batch_size=batch_size)) == expected
    assert parses([nlp(text) for text in captions[:20]]) == expected[:20]


def test_install_refuses_beam_search() -> None:
    nlp = spacy.load(choose_model(None), exclude=["ner"])
    nlp.get_pipe(stepped_parser.PARSER).cfg["beam_width"] = 4
    assert not stepped_parser.install(nlp)
    assert stepped_parser.COMPONENT not in nlp.pipe_names and stepped_parser.PARSER in nlp.pipe_names


def test_install_refuses_a_pipeline_without_parser() -> None:
    nlp = spacy.load(choose_model(None), exclude=["ner", "parser"])
    assert not stepped_parser.install(nlp)
