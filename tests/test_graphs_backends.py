"""Backends behind the registry: model choice, sng mapping, stanza conversion, head/attribute normalisation."""

from __future__ import annotations

import importlib.util

import pytest

from tir.errors import UserError
from tir.knowledge.graphs import backend_identity, get_backend
from tir.knowledge.graphs import spacy_backend
from tir.knowledge.graphs.normalise import correct_typo, normalise_head, split_hyphenated
from tir.knowledge.graphs.rules import build_graph


def test_model_choice_and_missing_model_error(monkeypatch):
    assert spacy_backend.choose_model("my_model") == "my_model"
    assert spacy_backend.choose_model(None) in spacy_backend.DEFAULT_MODELS
    monkeypatch.setattr(spacy_backend.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="requirements-spacy-model.txt"):
        spacy_backend.choose_model(None)


def test_unknown_spacy_model_is_a_user_error():
    with pytest.raises(UserError, match="not installed"):
        spacy_backend.load_spacy("no_such_model_xyz")


def test_identity_is_cheap_and_names_the_model():
    identity = backend_identity("spacy")
    assert identity["backend"] == "spacy" and identity["model"] in spacy_backend.DEFAULT_MODELS


def test_ner_is_excluded_and_hyphenated_words_stay_whole():
    nlp = spacy_backend.load_spacy(None)
    assert "ner" not in nlp.pipe_names
    words = [t.text for t in nlp("a t shirt and black-and-white flip-flops")]
    assert "t shirt" in words and "black-and-white" in words and "flip-flops" in words


def test_sng_backend_maps_to_the_schema():
    backend = get_backend("sng")
    caption = "A man wearing a red shirt is holding a phone."
    graph = backend.parse_batch([caption, ""])[0]
    assert "shirt" in graph.heads() and ("shirt", "red") in graph.attribute_pairs()
    for obj in graph.objects:
        assert caption[obj.start : obj.end] == obj.text
    assert backend.version.startswith("SceneGraphParser 0.1.0")


def test_parse_prefix_caps_words():
    text, cut = spacy_backend.parse_prefix("a b c d", max_words=2)
    assert (text, cut) == ("a b", True)
    assert spacy_backend.parse_prefix("a b", max_words=2) == ("a b", False)


@pytest.mark.parametrize(
    ("text", "lemma", "head"),
    [("jeans", "jean", "jeans"), ("t shirt", "t shirt", "t-shirt"), ("sihrt", "sihrt", "shirt"),
     ("snekers", "sneker", "sneaker"), ("jakcet", "jakcet", "jacket"), ("shoes", "shoe", "shoe"),
     ("skirt", "skirt", "skirt"), ("khaki", "khaki", "khaki")],
)
def test_normalise_head(text, lemma, head):
    assert normalise_head(text, lemma) == head


def test_typo_correction_leaves_real_words_alone():
    assert correct_typo("short") is None and correct_typo("parts") is None and correct_typo("hat") is None


@pytest.mark.parametrize(
    ("word", "out"),
    [("black-and-tan", ["black", "tan"]), ("dark-blue", ["dark blue"]), ("short-sleeve", ["short-sleeved"]),
     ("light-colored", ["light"]), ("blueish/purple", ["blueish", "purple"]), ("button-up", ["button-up"]),
     ("multicolor", ["multi-colored"]), ("dark-and-light-blue", ["dark", "light blue"])],
)
def test_split_hyphenated(word, out):
    assert split_hyphenated(word) == out


stanza_missing = importlib.util.find_spec("stanza") is None


def _document(text, rows):
    from stanza.models.common.doc import Document

    sentences, pos = [], 0
    for sentence in rows:
        words = []
        for k, (word, lemma, upos, xpos, head, deprel) in enumerate(sentence):
            start = text.index(word, pos)
            pos = start + len(word)
            words.append(dict(id=k + 1, text=word, lemma=lemma, upos=upos, xpos=xpos, head=head, deprel=deprel,
                              start_char=start, end_char=pos))
        sentences.append(words)
    return Document(sentences, text=text)


@pytest.mark.skipif(stanza_missing, reason="stanza (the `stanza` extra) is not installed")
def test_stanza_document_to_graph():
    from tir.knowledge.graphs.stanza_backend import words_to_toks

    text = "A woman in a white shirt is carrying a bag. Her hair is long."
    doc = _document(text, [
        [("A", "a", "DET", "DT", 2, "det"), ("woman", "woman", "NOUN", "NN", 8, "nsubj"),
         ("in", "in", "ADP", "IN", 6, "case"), ("a", "a", "DET", "DT", 6, "det"),
         ("white", "white", "ADJ", "JJ", 6, "amod"), ("shirt", "shirt", "NOUN", "NN", 2, "nmod"),
         ("is", "be", "AUX", "VBZ", 8, "aux"), ("carrying", "carry", "VERB", "VBG", 0, "root"),
         ("a", "a", "DET", "DT", 10, "det"), ("bag", "bag", "NOUN", "NN", 8, "obj"), (".", ".", "PUNCT", ".", 8, "punct")],
        [("Her", "she", "PRON", "PRP$", 2, "nmod:poss"), ("hair", "hair", "NOUN", "NN", 4, "nsubj"),
         ("is", "be", "AUX", "VBZ", 4, "cop"), ("long", "long", "ADJ", "JJ", 0, "root"), (".", ".", "PUNCT", ".", 4, "punct")],
    ])
    graph = build_graph(words_to_toks(doc))
    assert graph.heads() == ["woman", "shirt", "bag", "hair"]
    assert set(graph.triples()) == {("woman", "in", "shirt"), ("woman", "carry", "bag")}
    assert set(graph.attribute_pairs()) == {("shirt", "white"), ("hair", "long")}
    for obj in graph.objects:
        assert text[obj.start : obj.end] == obj.text
