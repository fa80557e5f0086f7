"""Captions written from an identity's attributes, each with its ground-truth scene graph.

The graph follows ``GRAPH_CONVENTIONS.md``: the person is object 0 (head ``man``/``woman`` or
the noun used), pronouns resolve to it, heads are singular lemmas (plural-only words kept),
compound modifiers are dropped (``tennis shoes`` -> ``shoe``), colours and patterns are
attributes as written (``short sleeve`` -> ``short-sleeved``), and relations are
(subject, predicate, object) with "wearing X, Y and Z" distributed. Typos and layout quirks
(ALL CAPS, double spaces, newlines, "word.Word") change the text only, never the graph.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from tir.pipeline.synth.appearance import Identity

NOUNS = {
    "male": ("man", "man", "man", "young man", "male", "guy", "boy"),
    "female": ("woman", "woman", "woman", "young woman", "lady", "female", "girl"),
}
PRONOUNS = {"male": ("he", "his"), "female": ("she", "her")}
SPELLINGS = {"grey": ("grey", "gray"), "light grey": ("light grey", "light gray"), "dark grey": ("dark grey", "dark gray"),
             "blonde": ("blonde", "blond")}
# garment -> [(text as written, head lemma, extra attribute or None)]
TOP_WORDS = {
    "t-shirt": [("t-shirt", "t-shirt", None), ("t shirt", "t-shirt", None), ("tshirt", "t-shirt", None)],
    "shirt": [("shirt", "shirt", None), ("button-up shirt", "shirt", "button-up")],
    "jacket": [("jacket", "jacket", None)],
    "coat": [("coat", "coat", None), ("long coat", "coat", "long")],
    "sweater": [("sweater", "sweater", None)],
    "hoodie": [("hoodie", "hoodie", None)],
    "dress": [("dress", "dress", None)],
    "blouse": [("blouse", "blouse", None)],
}
BOTTOM_WORDS = {
    "pants": [("pants", "pants"), ("trousers", "trousers"), ("slacks", "slacks")],
    "jeans": [("jeans", "jeans")],
    "shorts": [("shorts", "shorts")],
    "skirt": [("skirt", "skirt")],
}
SHOE_WORDS = {
    "shoes": [("shoes", "shoe"), ("tennis shoes", "shoe"), ("running shoes", "shoe")],
    "sneakers": [("sneakers", "sneaker")],
    "boots": [("boots", "boot")],
    "sandals": [("sandals", "sandal")],
}
BAG_WORDS = {
    "backpack": [("backpack", "backpack"), ("back pack", "backpack")],
    "handbag": [("handbag", "handbag"), ("hand bag", "handbag"), ("purse", "purse")],
    "shoulder bag": [("shoulder bag", "bag"), ("bag", "bag"), ("messenger bag", "bag")],
}
HAT_WORDS = {"cap": [("cap", "cap"), ("baseball cap", "cap")], "hat": [("hat", "hat")], "beanie": [("beanie", "beanie")]}
PATTERN_WORDS = {"striped": ("striped",), "checked": ("checked", "plaid", "checkered")}
LOGO_WORDS = ("logo", "graphic")
WEAR_FINITE = (("is wearing", "wear"), ("wears", "wear"), ("is dressed in", "dress in"), ("has on", "have on"))
WEAR_PARTICIPLE = (("wearing", "wear"), ("wearing", "wear"), ("dressed in", "dress in"))
CARRY_FINITE = (("is carrying", "carry"), ("carries", "carry"), ("is holding", "hold"))
CARRY_PARTICIPLE = (("carrying", "carry"), ("holding", "hold"))
TYPOS = {"shirt": "shrit", "black": "balck", "wearing": "waering", "jeans": "jenas", "carrying": "carring",
         "white": "whtie", "backpack": "backpakc", "sneakers": "snekers", "pants": "pnats", "jacket": "jakcet"}


@dataclass
class Graph:
    """A scene graph under construction: objects (head lemmas), attributes and relations by position."""

    objects: list[str] = field(default_factory=list)
    attributes: list[list] = field(default_factory=list)
    relations: list[list] = field(default_factory=list)

    def add(self, head: str, *attributes: str) -> int:
        self.objects.append(head)
        index = len(self.objects) - 1
        for text in attributes:
            self.attributes.append([index, text])
        return index

    def relate(self, subject: int, predicate: str, obj: int) -> None:
        self.relations.append([subject, predicate, obj])


@dataclass(frozen=True)
class Caption:
    """One caption and its ground-truth graph."""

    text: str
    objects: list[str]
    attributes: list[list]
    relations: list[list]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(parts: list[str], rng: random.Random) -> str:
    if len(parts) == 1:
        return parts[0]
    comma = ", and " if len(parts) > 2 and rng.random() < 0.3 else " and "
    return ", ".join(parts[:-1]) + comma + parts[-1]


class _Writer:
    """Writes one caption about one identity, filling its graph as it goes."""

    def __init__(self, identity: Identity, rng: random.Random) -> None:
        self.who, self.rng, self.graph = identity, rng, Graph()
        self.subject, self.possessive = PRONOUNS[identity.gender]
        self.noun, self.pronoun_only = "", False
        self.mention_hair = self.mention_bag = False

    # ------------------------------------------------------------------ words
    def colour(self, name: str) -> str:
        return self.rng.choice(SPELLINGS.get(name, (name,)))

    def colours(self, names: tuple[str, ...], obj: int) -> str:
        """Write one or two colours ("black", "black and white"), adding each as an attribute of ``obj``."""
        written = [self.colour(name) for name in names]
        for text in written:
            self.graph.attributes.append([obj, text])
        return " and ".join(written)

    def plural(self, words: str) -> str:
        return "a pair of " + words if self.rng.random() < 0.35 else words

    # ------------------------------------------------------------------ noun phrases -> (text, object)
    def top(self) -> tuple[str, int]:
        """The top with its colours, sleeves and pattern; parts and prints follow as "with ..." phrases."""
        who, rng = self.who, self.rng
        words, head, extra = rng.choice(TOP_WORDS[who.top])
        obj = self.graph.add(head, *([extra] if extra else []))
        before: list[str] = []
        features: list[str] = []  # "short sleeves", "black stripes", "a white logo on it"
        sleeve_style = rng.random()
        if who.sleeves != "none" and who.top in ("shirt", "dress", "blouse") and sleeve_style < 0.35:
            before.append(rng.choice((f"{who.sleeves}-sleeved", f"{who.sleeves} sleeve", f"{who.sleeves} sleeved")))
            self.graph.attributes.append([obj, f"{who.sleeves}-sleeved"])
        elif who.sleeves == "none" and sleeve_style < 0.7:
            before.append("sleeveless")
            self.graph.attributes.append([obj, "sleeveless"])
        elif who.sleeves != "none" and sleeve_style > 0.8 and who.top != "t-shirt":
            self.graph.relate(obj, "with", self.graph.add("sleeve", who.sleeves))
            features.append(f"{who.sleeves} sleeves")
        if who.pattern in PATTERN_WORDS and rng.random() < 0.7:
            pattern = rng.choice(PATTERN_WORDS[who.pattern])
            before.append(self.colours(who.top_colours, obj) + " " + pattern)
            self.graph.attributes.append([obj, pattern])
        else:
            before.append(self.colours(who.top_colours[:1], obj))
            if who.pattern == "striped":
                stripe = self.graph.add("stripe")
                self.graph.relate(obj, "with", stripe)
                features.append(f"{self.colours(who.top_colours[1:], stripe)} stripes")
            elif who.pattern == "checked":
                before.append("checked")
                self.graph.attributes.append([obj, "checked"])
            elif who.pattern == "logo":
                features.append(self.logo(obj))
        order = before if rng.random() < 0.7 else before[::-1]
        return _article(" ".join(order + [words])) + "".join(f" {'and' if i else 'with'} {f}" for i, f in enumerate(features)), obj

    def logo(self, garment: int) -> str:
        """ "a white logo (on the front | on it)": [garment, with, logo], and [logo, on, garment] for "on it"."""
        word = self.rng.choice(LOGO_WORDS)
        logo = self.graph.add(word)
        self.graph.relate(garment, "with", logo)
        phrase = _article(self.colours(self.who.top_colours[1:], logo) + " " + word)
        style = self.rng.random()
        if style < 0.4:
            return f"{phrase} on the front"
        if style < 0.7:
            self.graph.relate(logo, "on", garment)
            return f"{phrase} on it"
        return phrase

    def bottom(self) -> tuple[str, int]:
        words, head = self.rng.choice(BOTTOM_WORDS[self.who.bottom or "pants"])
        obj = self.graph.add(head)
        text = self.colours((self.who.bottom_colour or "black",), obj) + " " + words
        return (_article(text) if head == "skirt" else self.plural(text)), obj

    def shoes(self) -> tuple[str, int]:
        words, head = self.rng.choice(SHOE_WORDS[self.who.shoes])
        obj = self.graph.add(head)
        return self.plural(self.colours(self.who.shoe_colours, obj) + " " + words), obj

    def hat(self) -> tuple[str, int]:
        words, head = self.rng.choice(HAT_WORDS[self.who.hat or "hat"])
        obj = self.graph.add(head)
        return _article(self.colours((self.who.hat_colour or "black",), obj) + " " + words), obj

    def glasses(self) -> tuple[str, int]:
        words = self.who.glasses or "glasses"
        obj = self.graph.add(words)
        if words == "glasses" and self.rng.random() < 0.3:
            self.graph.attributes.append([obj, "black"])
            words = "black glasses"
        return self.plural(words), obj

    def bag(self) -> tuple[str, int]:
        words, head = self.rng.choice(BAG_WORDS[self.who.bag or "shoulder bag"])
        obj = self.graph.add(head)
        return _article(self.colours((self.who.bag_colour or "black",), obj) + " " + words), obj

    def hair(self) -> tuple[str, int]:
        length, colour, obj = self._hair()
        return f"{length} {colour} hair", obj

    def _hair(self) -> tuple[str, str, int]:
        obj = self.graph.add("hair")
        length, colour = self.who.hair_length, self.colour(self.who.hair_colour)
        self.graph.attributes.extend([[obj, length], [obj, colour]])
        return length, colour, obj

    # ------------------------------------------------------------------ clauses (verb phrases about the person)
    def wear(self, items: list[str], finite: bool) -> str:
        """A verb phrase putting every wearable in ``items`` on the person (finite or participle)."""
        phrases, objects = [], []
        for item in items:
            text, obj = getattr(self, item)()
            phrases.append(text)
            objects.append(obj)
        verbs = WEAR_FINITE if finite else WEAR_PARTICIPLE
        if "glasses" in items:  # nobody is "dressed in" glasses
            verbs = tuple(verb for verb in verbs if verb[1] != "dress in")
        verb, predicate = self.rng.choice(verbs)
        for obj in objects:
            self.graph.relate(0, predicate, obj)
        return f"{verb} {_join(phrases, self.rng)}"

    def carry(self, finite: bool) -> str:
        """A verb phrase about the bag: carried, held in a hand, on the back or over a shoulder."""
        text, bag = self.bag()
        who, rng, graph = self.who, self.rng, self.graph
        side = f"{self.possessive} {who.bag_side}"
        if who.bag == "handbag" and rng.random() < 0.5:
            graph.relate(0, "hold", bag)
            graph.relate(bag, "in", graph.add("hand"))
            return f"{'is holding' if finite else 'holding'} {text} in {side} hand"
        if who.bag == "backpack" and rng.random() < 0.5:
            graph.relate(0, "have" if finite else "with", bag)
            graph.relate(bag, "on", graph.add("back"))
            return f"{'has' if finite else 'with'} {text} on {self.possessive} back"
        if who.bag == "shoulder bag" and rng.random() < 0.5:
            graph.relate(0, "carry", bag)
            graph.relate(bag, "over", graph.add("shoulder"))
            return f"{'is carrying' if finite else 'carrying'} {text} over {side} shoulder"
        verb, predicate = rng.choice(CARRY_FINITE if finite else CARRY_PARTICIPLE)
        graph.relate(0, predicate, bag)
        return f"{verb} {text}"

    def has_hair(self) -> str:
        text, hair = self.hair()
        self.graph.relate(0, "have", hair)
        return f"has {text}"

    def possessive_hair(self) -> str:
        """"Her hair is long and brown": attributes only, a possessive makes no relation."""
        length, colour, _ = self._hair()
        return f"{self.possessive.capitalize()} hair is {length} and {colour}"

    # ------------------------------------------------------------------ the caption
    def write(self, glasses_as_adjective: bool) -> str:
        """Compose the caption: an opening about the person, then the other facts in random order."""
        who, rng = self.who, self.rng
        self.pronoun_only = rng.random() < 0.12
        glasses_as_adjective = glasses_as_adjective and not self.pronoun_only  # "a bespectacled man" needs the noun
        wearables = ["top"] + (["bottom"] if who.bottom else [])
        rng.shuffle(wearables)
        extras = [item for item, keep in (("shoes", rng.random() < 0.75), ("hat", bool(who.hat) and rng.random() < 0.9),
                  ("glasses", bool(who.glasses) and not glasses_as_adjective and rng.random() < 0.85)) if keep]
        rng.shuffle(extras)
        wearables += extras
        self.mention_hair = rng.random() < 0.8
        self.mention_bag = bool(who.bag) and rng.random() < 0.95

        self.noun = rng.choice(NOUNS[who.gender])
        head = ("man" if who.gender == "male" else "woman") if self.pronoun_only else self.noun.split()[-1]
        self.graph.add(head, *(["bespectacled"] if glasses_as_adjective else []))
        described = f"bespectacled {self.noun}" if glasses_as_adjective else self.noun
        count = rng.randint(1, min(3, len(wearables)))
        sentences = [self.opening(described, wearables[:count])]
        return self.render(self.continuation(sentences, wearables[count:]))

    def opening(self, described: str, items: list[str]) -> list[str]:
        """The first sentence, introducing the person with the first ``items``."""
        rng, style = self.rng, self.rng.random()
        intro = _article(described)
        intro = intro[0].upper() + intro[1:]
        if self.pronoun_only:
            return [self.subject.capitalize(), self.wear(items, finite=True)]
        if style < 0.4:  # "A woman (with long hair) wearing X and carrying Y."
            if self.mention_hair and rng.random() < 0.4:
                text, hair = self.hair()
                self.graph.relate(0, "with", hair)
                intro, self.mention_hair = f"{intro} with {text}", False
            phrases = [self.wear(items, finite=False)]
            if self.mention_bag and rng.random() < 0.4:
                phrases.append(self.carry(finite=False))
                self.mention_bag = False
            return [f"{intro} {_join(phrases, rng)}"]
        if style < 0.6:  # "A man in X, Y and Z." distributes `in`
            phrases = []
            for item in items:
                text, obj = getattr(self, item)()
                phrases.append(text)
                self.graph.relate(0, "in", obj)
            return [f"{intro} in {_join(phrases, rng)}"]
        return [f"{rng.choice(('The', 'This'))} {described}", self.wear(items, finite=True)]

    def continuation(self, sentences: list[list[str]], items: list[str]) -> list[list[str]]:
        """Add the remaining facts as sentences or conjoined verb phrases, in random order."""
        rng = self.rng
        clauses = [self.wear(items[index:index + 2], finite=True) for index in range(0, len(items), 2)]
        if self.mention_bag:
            clauses.append(self.carry(finite=True))
        hair_sentence = []
        if self.mention_hair and rng.random() < 0.25:
            hair_sentence = [[self.possessive_hair()]]
        elif self.mention_hair:
            clauses.append(self.has_hair())
        rng.shuffle(clauses)
        for clause in clauses:
            if len(sentences[-1]) > 1 and rng.random() < 0.3:
                sentences[-1].append(clause)  # conjoined verb phrases share the subject
            else:
                subject = self.subject if self.pronoun_only or rng.random() < 0.75 else f"the {self.noun}"
                sentences.append([subject.capitalize(), clause])
        position = rng.randint(1, len(sentences))
        return sentences[:position] + hair_sentence + sentences[position:]

    def render(self, sentences: list[list[str]]) -> str:
        rng = self.rng
        texts = []
        for parts in sentences:
            subject, phrases = parts[0], parts[1:]
            texts.append(" ".join([subject] + ([_join(phrases, rng)] if phrases else [])))
        out = texts[0]
        for text in texts[1:]:
            if rng.random() < 0.2:  # run-on sentence
                out += ", " + text[0].lower() + text[1:]
            else:
                out += ". " + text
        return out + ("" if rng.random() < 0.1 else ".")


def _quirks(text: str, rng: random.Random) -> str:
    """Typos and layout quirks at small rates; the graph is unaffected."""
    if rng.random() < 0.05:
        present = [word for word in TYPOS if re.search(rf"\b{word}\b", text)]
        if present:
            word = rng.choice(present)
            text = re.sub(rf"\b{word}\b", TYPOS[word], text, count=1)
    roll = rng.random()
    if roll < 0.02:
        text = text.replace(" ", "  ", 1) if rng.random() < 0.5 else text.replace(". ", ".  ", 1)
    elif roll < 0.03:
        text = text.replace(". ", ".\n", 1) if ". " in text else text + "\n"
    elif roll < 0.04:
        text = text.replace(". ", ".", 1)
    elif roll < 0.05:
        text = " " + text + " "
    if rng.random() < 0.01:
        text = text.upper()
    return text


def write_caption(identity: Identity, rng: random.Random) -> Caption:
    """One caption of ``identity`` with its ground-truth graph, drawn from ``rng``."""
    writer = _Writer(identity, rng)
    text = writer.write(glasses_as_adjective=identity.glasses == "glasses" and rng.random() < 0.1)
    graph = writer.graph
    return Caption(_quirks(text, rng), graph.objects, graph.attributes, graph.relations)


def write_captions(identity: Identity, count: int, rng: random.Random, tries: int = 20) -> list[Caption]:
    """``count`` captions of one image, each a different sentence."""
    captions: list[Caption] = []
    seen: set[str] = set()
    while len(captions) < count:
        for _ in range(tries):
            caption = write_caption(identity, rng)
            if caption.text.strip().lower() not in seen:
                break
        seen.add(caption.text.strip().lower())
        captions.append(caption)
    return captions
