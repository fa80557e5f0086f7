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
        who, rng = self.who, self.rng
        words, head, extra = rng.choice(TOP_WORDS[who.top])
        obj = self.graph.add(head, *([extra] if extra else []))
        before: list[str] = []
        after = ""
        sleeve_style = rng.random()
        if who.sleeves != "none" and who.top in ("shirt", "dress", "blouse") and sleeve_style < 0.35:
            text = rng.choice((f"{who.sleeves}-sleeved", f"{who.sleeves} sleeve", f"{who.sleeves} sleeved"))
            before.append(text)
            self.graph.attributes.append([obj, f"{who.sleeves}-sleeved"])
        elif who.sleeves == "none" and sleeve_style < 0.7:
            before.append("sleeveless")
            self.graph.attributes.append([obj, "sleeveless"])
        elif who.sleeves != "none" and sleeve_style > 0.8 and who.top != "t-shirt":
            sleeve = self.graph.add("sleeve", who.sleeves)
            self.graph.relate(obj, "with", sleeve)
            after = f" with {who.sleeves} sleeves"
        if who.pattern in PATTERN_WORDS and rng.random() < 0.7:
            pattern = rng.choice(PATTERN_WORDS[who.pattern])
            before.append(self.colours(who.top_colours, obj) + " " + pattern)
            self.graph.attributes.append([obj, pattern])
        elif who.pattern == "striped":
            before.append(self.colours(who.top_colours[:1], obj))
            stripe = self.graph.add("stripe")
            after += f" with {self.colours(who.top_colours[1:], stripe)} stripes"
            self.graph.relate(obj, "with", stripe)
        else:
            before.append(self.colours(who.top_colours[:1], obj))
            if who.pattern in ("logo", "checked"):  # a checked top said plainly names its pattern anyway
                if who.pattern == "checked":
                    before.append("checked")
                    self.graph.attributes.append([obj, "checked"])
                else:
                    after += self.logo(obj)
        order = before if rng.random() < 0.7 else before[::-1]
        return _article(" ".join(order + [words])) + after, obj

    def logo(self, garment: int) -> str:
        word = self.rng.choice(LOGO_WORDS)
        logo = self.graph.add(word)
        self.graph.relate(garment, "with", logo)
        colour = self.colours(self.who.top_colours[1:], logo)
        style = self.rng.random()
        if style < 0.4:
            return f" with {_article(colour + ' ' + word)} on the front"
        if style < 0.7:
            self.graph.relate(logo, "on", garment)
            return f" with {_article(colour + ' ' + word)} on it"
        return f" with {_article(colour + ' ' + word)}"

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
        obj = self.graph.add("hair")
        length, colour = self.who.hair_length, self.colour(self.who.hair_colour)
        self.graph.attributes.extend([[obj, length], [obj, colour]])
        return f"{length} {colour} hair", obj

    # ------------------------------------------------------------------ clauses (verb phrases about the person)
    def wear(self, items: list[str], finite: bool) -> str:
        """A verb phrase putting every wearable in ``items`` on the person (finite or participle)."""
        phrases, objects = [], []
        for item in items:
            text, obj = getattr(self, item)()
            phrases.append(text)
            objects.append(obj)
        verb, predicate = self.rng.choice(WEAR_FINITE if finite else WEAR_PARTICIPLE)
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
        obj = self.graph.add("hair")
        length, colour = self.who.hair_length, self.colour(self.who.hair_colour)
        self.graph.attributes.extend([[obj, length], [obj, colour]])
        return f"{self.possessive.capitalize()} hair is {length} and {colour}"

    # ------------------------------------------------------------------ the caption
    def write(self, glasses_as_adjective: bool) -> str:
        """Compose the caption: an opening about the person, then clauses in random order."""
        who, rng = self.who, self.rng
        wearables = ["top"] + (["bottom"] if who.bottom else [])
        rng.shuffle(wearables)
        extras = [item for item, keep in (("shoes", rng.random() < 0.75), ("hat", bool(who.hat) and rng.random() < 0.9),
                  ("glasses", bool(who.glasses) and not glasses_as_adjective and rng.random() < 0.85)) if keep]
        rng.shuffle(extras)
        wearables += extras
        mention_hair = rng.random() < 0.8
        mention_bag = bool(who.bag) and rng.random() < 0.95

        noun = rng.choice(NOUNS[who.gender])
        pronoun_only = rng.random() < 0.12
        head = ("man" if who.gender == "male" else "woman") if pronoun_only else noun.split()[-1]
        self.graph.add(head, *(["bespectacled"] if glasses_as_adjective else []))
        described = f"bespectacled {noun}" if glasses_as_adjective else noun
        count = rng.randint(1, min(3, len(wearables)))
        opening, rest = wearables[:count], wearables[count:]

        sentences: list[list[str]] = []  # each: [subject, verb phrase, ...]; a lone entry is a whole sentence
        style = rng.random()
        if pronoun_only:
            sentences.append([self.subject.capitalize(), self.wear(opening, finite=True)])
        elif style < 0.4:  # "A woman (with long hair) wearing X and carrying Y."
            intro = _article(described)
            if mention_hair and rng.random() < 0.4:
                text, hair = self.hair()
                self.graph.relate(0, "with", hair)
                intro, mention_hair = f"{intro} with {text}", False
            phrases = [self.wear(opening, finite=False)]
            if mention_bag and rng.random() < 0.4:
                phrases.append(self.carry(finite=False))
                mention_bag = False
            sentences.append([f"{intro[0].upper()}{intro[1:]} {_join(phrases, rng)}"])
        elif style < 0.6:  # "A man in X, Y and Z." distributes `in`
            phrases = []
            for item in opening:
                text, obj = getattr(self, item)()
                phrases.append(text)
                self.graph.relate(0, "in", obj)
            intro = _article(described)
            sentences.append([f"{intro[0].upper()}{intro[1:]} in {_join(phrases, rng)}"])
        else:
            sentences.append([f"{rng.choice(('The', 'This'))} {described}", self.wear(opening, finite=True)])

        clauses = [self.wear(rest[index:index + 2], finite=True) for index in range(0, len(rest), 2)]
        if mention_bag:
            clauses.append(self.carry(finite=True))
        if mention_hair and rng.random() < 0.25:
            sentences_after = [[self.possessive_hair()]]
        else:
            sentences_after = []
            if mention_hair:
                clauses.append(self.has_hair())
        rng.shuffle(clauses)
        for clause in clauses:
            if len(sentences[-1]) > 1 and rng.random() < 0.3:
                sentences[-1].append(clause)  # conjoined verb phrases share the subject
            else:
                subject = self.subject if pronoun_only or rng.random() < 0.75 else f"the {noun}"
                sentences.append([subject.capitalize(), clause])
        position = rng.randint(1, len(sentences))
        return self.render(sentences[:position] + sentences_after + sentences[position:])

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
