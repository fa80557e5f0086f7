"""The spacy backend's rules for captions as annotators really write them: one test per failure family of issue 18.

Captions here are written for the tests (none is in the gold files or any dataset's test split).
"""

from __future__ import annotations

import pytest

from tir.knowledge.graphs import get_backend
from tir.knowledge.graphs.normalise import correct_attribute, correct_typo


@pytest.fixture(scope="module")
def parse():
    backend = get_backend("spacy")
    return lambda caption: backend.parse_batch([caption])[0]


def test_pattern_words_in_runs_of_colours_are_attributes_not_verbs(parse):
    g = parse("a boy wearing a red and blue striped sweater grey pants and black boots")
    assert ("boy", "wear", "sweater") in g.triples() and ("boy", "wear", "pants") in g.triples()
    assert {("sweater", "red"), ("sweater", "blue"), ("sweater", "striped"), ("pants", "grey")} <= set(g.attribute_pairs())
    assert not [t for t in g.triples() if t[1] in ("strip", "grey")]


def test_pattern_noun_before_a_garment_is_an_attribute(parse):
    g = parse("a girl in a pink and white stripe tank top")
    assert g.heads() == ["girl", "top"]
    assert {("top", "pink"), ("top", "white"), ("top", "striped")} == set(g.attribute_pairs())
    assert "stripe" in parse("a girl in a tank top with pink stripes").heads()


def test_misspelt_pattern_is_an_attribute_not_an_object(parse):
    g = parse("a man in a verticle striped shirt")
    assert g.heads() == ["man", "shirt"]
    assert ("shirt", "vertical") in g.attribute_pairs()


@pytest.mark.parametrize(
    ("caption", "garment", "attribute"),
    [
        ("a woman in a button down shirt and grey slacks", "shirt", "button-down"),
        ("a man wearing a plaid button up shirt", "shirt", "button-up"),
        ("a guy in cut off shorts and a white tank top", "shorts", "cut-off"),
        ("a girl in jean shorts and a yellow top", "shorts", "jean"),
        ("a man in a blue polo shirt", "shirt", "blue"),
        ("a woman in a polka dot skirt", "skirt", "polka-dot"),
    ],
)
def test_garment_compounds(parse, caption, garment, attribute):
    g = parse(caption)
    assert garment in g.heads() and (garment, attribute) in g.attribute_pairs()
    assert not {"button", "tank", "polo", "jean", "polka", "dot", "cut", "polo shirt"} & set(g.heads())
    assert not [t for t in g.triples() if t[1] in ("button", "cut", "down", "up")]


def test_garment_naming_a_kind_of_the_next_is_a_compound(parse):
    g = parse("a man in a grey suit jacket and brown dress shoes")
    assert g.heads() == ["man", "jacket", "shoe"]


@pytest.mark.parametrize("thing", ["something", "an object", "a cup", "an item"])
def test_things_held_in_a_hand(parse, thing):
    g = parse(f"a man in a grey coat holding {thing} in his left hand")
    head = thing.split()[-1]
    assert ("man", "hold", head) in g.triples() and (head, "in", "hand") in g.triples()
    assert not [t for t in g.triples() if t[1] in ("hold in", "carry in")]


def test_thing_in_a_hand_after_with_keeps_the_inner_triple(parse):
    g = parse("a woman with something in her hand wearing a blue coat")
    assert ("something", "in", "hand") in g.triples() and ("woman", "wear", "coat") in g.triples()


@pytest.mark.parametrize("verb", ["walking", "standing", "running", "jogging"])
def test_moving_in_a_garment_is_in(parse, verb):
    triples = parse(f"a man {verb} in a green shirt and grey shorts").triples()
    assert ("man", "in", "shirt") in triples and ("man", "in", "shorts") in triples
    assert not [t for t in triples if t[1].endswith(" in")]


def test_sitting_in_a_thing_keeps_the_verb(parse):
    assert ("man", "sit in", "chair") in parse("a man sitting in a chair wearing a hat").triples()


def test_dressed_like_someone_is_a_comparison(parse):
    g = parse("a woman dressed like a doctor in a white coat")
    assert "doctor" not in g.heads()
    assert ("woman", "dress in", "coat") in g.triples()
    assert "tourist" not in parse("a man who looks like a tourist with a camera").heads()


def test_bottoms_are_a_garment(parse):
    g = parse("a woman with a red top and black bottoms")
    assert ("woman", "with", "bottoms") in g.triples() and ("bottoms", "black") in g.attribute_pairs()


def test_garment_list_without_commas(parse):
    g = parse("a woman wearing a green t-shirt black jean shorts white socks and brown boots")
    assert g.heads() == ["woman", "t-shirt", "shorts", "sock", "boot"]
    assert set(g.triples()) == {("woman", "wear", h) for h in ("t-shirt", "shorts", "sock", "boot")}
    assert ("t-shirt", "green") in g.attribute_pairs() and ("shorts", "jean") in g.attribute_pairs()
    assert ("shorts", "t-shirt") not in g.attribute_pairs()


def test_list_after_over_is_worn_by_the_person(parse):
    triples = parse("a man in a grey coat over a blue sweater, black jeans and brown shoes").triples()
    assert ("coat", "over", "sweater") in triples
    assert ("man", "in", "jeans") in triples and ("man", "in", "shoe") in triples
    assert ("coat", "over", "jeans") not in triples
    assert ("vest", "over", "sweater") in parse("a man wearing a vest over a shirt and a sweater").triples()


def test_participle_after_an_item_belongs_to_the_person(parse):
    triples = parse("a man with a black backpack wearing a red cap and blue jeans").triples()
    assert ("man", "wear", "cap") in triples and ("man", "wear", "jeans") in triples
    assert ("man", "with", "backpack") in triples


def test_has_on_read_under_another_verb(parse):
    triples = parse("a woman is pushing a stroller she has on a long coat").triples()
    assert ("woman", "have on", "coat") in triples
    assert ("woman", "have on", "jacket") in parse("she has a red jacket on").triples()


def test_typos_of_garments_body_parts_and_colours(parse):
    g = parse("a woman with long balck hiar wearing a whtie jaket and blue trosuers")
    assert g.heads() == ["woman", "hair", "jacket", "trousers"]
    assert {("hair", "long"), ("hair", "black"), ("jacket", "white")} <= set(g.attribute_pairs())


def test_real_words_are_not_corrected():
    for word in ("back", "while", "wavy", "range", "sports", "wears", "shorts", "striped"):
        assert correct_attribute(word) is None
        assert correct_typo(word) in (None, word)


def test_caption_in_capitals_reads_like_lower_case(parse):
    shouted = parse("A WOMAN IN A WHITE COAT AND BLACK BOOTS IS WALKING ON THE SIDEWALK")
    quiet = parse("a woman in a white coat and black boots is walking on the sidewalk")
    assert shouted.triples() == quiet.triples() and shouted.attribute_pairs() == quiet.attribute_pairs()
    assert [o.text for o in shouted.objects][:2] == ["WOMAN", "COAT"]


def test_sleeve_length_is_not_also_a_length_of_the_garment(parse):
    assert set(parse("a man wearing a long sleeve grey shirt").attribute_pairs()) == {
        ("shirt", "long-sleeved"), ("shirt", "grey")}
    assert ("shirt", "long-sleeved") in parse("a woman in a long sleev white shirt").attribute_pairs()


def test_top_after_on_is_a_location_unless_it_is_a_garment(parse):
    assert ("woman", "have on", "top") in parse("she has on a black tank top").triples()
    assert "top" not in parse("a man with a cap on top of his head").heads()
