"""`tir synth` content: images keep identity, captions and ground-truth graphs describe what is drawn."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from tir.pipeline.synth import plan
from tir.pipeline.synth.appearance import sample_identities, sample_jitter
from tir.pipeline.synth.captions import SPELLINGS, TYPOS
from tir.pipeline.synth.draw import render

GARMENT_HEADS = {
    "t-shirt": {"t-shirt"}, "shirt": {"shirt"}, "jacket": {"jacket"}, "coat": {"coat"}, "sweater": {"sweater"},
    "hoodie": {"hoodie"}, "dress": {"dress"}, "blouse": {"blouse"}, "pants": {"pants", "trousers", "slacks"},
    "jeans": {"jeans"}, "shorts": {"shorts"}, "skirt": {"skirt"}, "shoes": {"shoe"}, "sneakers": {"sneaker"},
    "boots": {"boot"}, "sandals": {"sandal"}, "backpack": {"backpack"}, "handbag": {"handbag", "purse"},
    "shoulder bag": {"bag"}, "cap": {"cap"}, "hat": {"hat"}, "beanie": {"beanie"},
}
PERSON_HEADS = {"man", "woman", "male", "female", "guy", "boy", "lady", "girl"}
PREDICATES = {"wear", "dress in", "have on", "in", "with", "carry", "hold", "have", "on", "over"}


@pytest.fixture(scope="module")
def images():
    return plan("CUHK-PEDES", ids=40, images_per_id=3, seed=7)


def _spellings(colour: str) -> set[str]:
    return set(SPELLINGS.get(colour, (colour,)))


def _histogram(identity, jitter) -> np.ndarray:
    pixels = np.asarray(render(identity, jitter)) // 64
    counts = np.bincount((pixels[..., 0] * 16 + pixels[..., 1] * 4 + pixels[..., 2]).ravel(), minlength=64)
    return counts / counts.sum()


def test_images_of_one_identity_differ_but_are_closer_than_other_identities():
    import random

    rng = random.Random(3)
    identities = sample_identities(20, rng)
    owners, hists = [], []
    for index, identity in enumerate(identities):
        for _ in range(3):
            owners.append(index)
            hists.append(_histogram(identity, sample_jitter(rng)))
    owners_, h = np.array(owners), np.array(hists)
    distance = np.abs(h[:, None] - h[None]).sum(-1)
    same = (owners_[:, None] == owners_[None]) & ~np.eye(len(owners), dtype=bool)
    other = owners_[:, None] != owners_[None]
    assert distance[same].min() > 0  # no two images are identical
    assert distance[same].mean() < 0.9 * distance[other].mean()


def test_identities_differ_in_several_visible_attributes(images):
    identities = list({image.raw_id: image.identity for image in images}.values())
    for i, first in enumerate(identities):
        for second in identities[:i]:
            assert sum(a != b for a, b in zip(first.signature(), second.signature())) >= 4


def test_every_caption_names_the_person_and_the_top_with_its_colour(images):
    for image in images:
        who = image.identity
        for caption in image.captions:
            assert caption.objects[0] in PERSON_HEADS
            tops = [i for i, head in enumerate(caption.objects) if head in GARMENT_HEADS[who.top]]
            assert len(tops) == 1, caption.text
            colours = {text for obj, text in caption.attributes if obj == tops[0]}
            assert colours & _spellings(who.top_colours[0]), caption.text


def test_graph_attributes_match_the_drawn_attributes(images):
    for image in images:
        who = image.identity
        expected = {
            **({who.bottom: who.bottom_colour} if who.bottom else {}),
            who.shoes: who.shoe_colours[0],
            **({who.bag: who.bag_colour} if who.bag else {}),
            **({who.hat: who.hat_colour} if who.hat else {}),
        }
        for caption in image.captions:
            for item, colour in expected.items():
                for obj, head in enumerate(caption.objects):
                    if head in GARMENT_HEADS[item]:
                        attributes = {text for o, text in caption.attributes if o == obj}
                        assert attributes & _spellings(colour), (item, caption.text)
            if "hair" in caption.objects:
                hair = caption.objects.index("hair")
                attributes = {text for o, text in caption.attributes if o == hair}
                assert who.hair_length in attributes and attributes & _spellings(who.hair_colour)
            if "glasses" in caption.objects or "sunglasses" in caption.objects:
                assert who.glasses in caption.objects


def test_graph_words_appear_in_the_caption(images):
    undo = {typo: word for word, typo in TYPOS.items()}
    for image in images:
        for caption in image.captions:
            text = re.sub(r"\s+", " ", caption.text.lower())
            text = re.sub(r"[a-z]+", lambda m: undo.get(m.group(), m.group()), text)
            for _, attribute in caption.attributes:
                words = attribute.replace("-sleeved", "")
                assert words in text, (attribute, caption.text)
            for _, predicate, _ in caption.relations:
                assert predicate in PREDICATES


def test_captions_vary_in_grammar_and_have_rare_quirks():
    images = plan("RSTPReid", ids=60, images_per_id=5, seed=1)
    texts = [caption.text for image in images for caption in image.captions]
    joined = "\n".join(texts)
    for phrase in (" she ", " he ", " her ", " his ", "a pair of", " with ", "carrying", "holding", "dark ", "light "):
        assert phrase in joined.lower()
    assert re.search(r"\b(\w+) and (\w+) (striped|checked|plaid|checkered|sneakers|shoes|boots)", joined)
    quirky = [t for t in texts if t.isupper() or "  " in t or "\n" in t or any(typo in t for typo in TYPOS.values())]
    assert 0 < len(quirky) < 0.2 * len(texts)
    assert len(set(texts)) > 0.95 * len(texts)
    objects = Counter(head for image in images for caption in image.captions for head in caption.objects)
    assert {"hair", "sleeve", "stripe", "hand"} & set(objects)
