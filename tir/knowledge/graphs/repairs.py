"""Repairs of frequent misparses of pedestrian descriptions, made on the dependency tree before the rules read it.

Each repair finds one shape the small parser gets wrong on such text (garment lists without commas, colour words read
as verbs, a garment hung on a garment part, "over" lists, comparisons) and rebuilds that part of the tree.
The rules they serve are in docs/GRAPH_CONVENTIONS.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from tir.knowledge.graphs.lexicon import (
    COLOURS,
    COMPARISON_PREPS,
    COMPARISON_VERBS,
    GARMENT_COMPOUNDS,
    GARMENT_PARTS,
    GARMENTS,
    HYPHENATED,
    LOCATION_NOUNS,
    MATERIALS,
    NOT_ATTRIBUTES,
    PATTERNS,
    PERSON_NOUNS,
    PLURAL_ONLY,
    POSSESSIVES,
    PURPOSE_GERUNDS,
    SHADES,
    SLEEVE_LENGTHS,
    UPPER_BODY,
    WEARABLES,
    BODY_PARTS,
)
from tir.knowledge.graphs.normalise import correct_attribute, normalise_head
from tir.knowledge.graphs.tree import Tok, link_children
from tir.knowledge.graphs.tree import children as _children

NOUNISH_DEPS = frozenset("dobj obj pobj conj nsubj nsubjpass appos ROOT attr npadvmod dep oprd".split())
CONTAINERS = frozenset("pair piece set".split())
ITEM_POS = frozenset(("NOUN", "PROPN"))
COMPARISON_DEP = "comparison"  # the dep given to "a businessman" in "dressed like a businessman"
_GARMENT_WORDS = GARMENTS | PLURAL_ONLY | BODY_PARTS
_SEPARATORS = frozenset(", and or &".split())
_SUBJECT_DEPS = frozenset(("nsubj", "nsubjpass"))
_OVER_PREPS = frozenset("over under underneath beneath".split())
_WORN_POS = frozenset(("NOUN", "PROPN", "ADJ", "VERB", "X"))  # the parts of speech a wearable or body part can have


def _is_garment_word(tok: Tok) -> bool:
    """A garment, plural-only garment or body part (spelling variants and typos normalised)."""
    return normalise_head(tok.text, tok.lemma) in _GARMENT_WORDS


def _repair_coordination(toks: list[Tok]) -> None:
    """Undo a frequent misparse: "a striped shirt and plaid shorts" read as one noun phrase headed by shorts.

    The first garment (attached as nmod/compound, with `and` + a conjunct) becomes the phrase head again, the
    second garment its conjunct, and the modifiers left of the first garment move back to it.
    """
    for tok in toks:
        head = toks[tok.head]
        if tok.dep not in ("nmod", "compound") or head.i <= tok.i or not _is_garment_word(tok) or not _is_garment_word(head):
            continue
        kids = [toks[c] for c in tok.children]
        if not any(k.dep == "cc" for k in kids):
            continue
        for k in kids:
            if k.dep == "conj" and k.i < head.i and not _is_garment_word(k):
                k.head, k.dep = head.i, "amod"
            elif k.dep == "cc":
                k.head = head.i
        for c in head.children:
            if c < tok.i:
                toks[c].head = tok.i
        tok.head, tok.dep = (tok.i, "ROOT") if head.head == head.i else (head.head, head.dep)
        head.head, head.dep = tok.i, "conj"
        link_children(toks)


def _is_ancestor(toks: list[Tok], anc: Tok, tok: Tok) -> bool:
    """True when ``anc`` is ``tok``'s head, its head's head, ..."""
    while tok.head != tok.i:
        tok = toks[tok.head]
        if tok.i == anc.i:
            return True
    return False


def _garment_after_sleeve(toks: list[Tok], sleeve: Tok) -> Tok | None:
    """The garment a "long sleeve" modifies when only adjectives and modifiers stand between them."""
    for tok in toks[sleeve.i + 1 :]:
        word = normalise_head(tok.text, tok.lemma)
        if tok.pos in ITEM_POS and (word in GARMENTS or word in PLURAL_ONLY) and word != "sleeve":
            return tok
        if tok.pos not in ("ADJ", "NOUN", "PROPN", "VERB", "CCONJ") or tok.pos == "VERB" and tok.dep not in ("amod", "compound"):
            return None
    return None


def _repair_sleeve_head(toks: list[Tok]) -> None:
    """Undo another misparse: "a long sleeve beige shirt" read as a sleeve with the shirt in apposition.

    The garment takes the sleeve's place in the tree and the sleeve becomes its compound modifier.
    """
    for sleeve in toks:
        if sleeve.lower != "sleeve" or sleeve.i == 0 or toks[sleeve.i - 1].lower not in SLEEVE_LENGTHS:
            continue
        garment = _garment_after_sleeve(toks, sleeve)
        if garment is None:
            continue
        if not _is_ancestor(toks, garment, sleeve):
            garment.head, garment.dep = (garment.i, "ROOT") if sleeve.head == sleeve.i else (sleeve.head, sleeve.dep)
        for c in sleeve.children:
            if toks[c].lower not in SLEEVE_LENGTHS and c != garment.i:
                toks[c].head = garment.i
        sleeve.head, sleeve.dep = garment.i, "compound"
        link_children(toks)


def _item_word(toks: list[Tok], tok: Tok) -> str:
    """The normalised head a noun names, looking through containers ("a pair of boots" -> boot)."""
    word = normalise_head(tok.text, tok.lemma)
    if word in CONTAINERS:
        for of in _children(toks, tok, "prep"):
            for pobj in _children(toks, of, "pobj"):
                return normalise_head(pobj.text, pobj.lemma)
    return word


def _wearing_part_with(toks: list[Tok], prep: Tok) -> Tok | None:
    """For "dressed in a shirt with a logo" parsed with the `with` under the verb: the shirt."""
    head = toks[prep.head]
    if prep.lower != "with" or head.pos != "VERB" or prep.i == 0:
        return None
    before = toks[prep.i - 1]
    parts = [p for p in _children(toks, prep, "pobj") if _item_word(toks, p) in GARMENT_PARTS]
    if parts and before.pos in ITEM_POS and _item_word(toks, before) in WEARABLES and _is_ancestor(toks, head, before):
        return before
    return None


def _garment_above(toks: list[Tok], tok: Tok) -> Tok | None:
    """The nearest wearable noun above ``tok`` through prepositions ("a shirt with a logo on the front")."""
    while tok.dep in ("pobj", "prep", "conj") and tok.head != tok.i:
        tok = toks[tok.head]
        if tok.pos in ITEM_POS and _item_word(toks, tok) in WEARABLES:
            return tok
    return None


def _repair_part_attachment(toks: list[Tok]) -> None:
    """Undo misparses that hang garments on a garment's parts.

    A `with` + part phrase under the verb moves to the garment before it ("dressed in a shirt with a logo"), and a
    garment conjoined to a part or a location ("a shirt with a logo and jeans") becomes the garment's conjunct,
    so the verb distributes over it and the `with` stays with its own noun.
    """
    moved = False
    for prep in toks:
        garment = _wearing_part_with(toks, prep) if prep.lower == "with" else None
        if garment is not None:
            prep.head, moved = garment.i, True
    if moved:
        link_children(toks)
    for tok in toks:
        head = toks[tok.head]
        if tok.dep != "conj" or _item_word(toks, tok) not in WEARABLES or _item_word(toks, head) in WEARABLES:
            continue
        garment = _garment_above(toks, head)
        if garment is None:
            continue
        for cc in _children(toks, head, "cc", "punct"):
            if cc.i < tok.i and cc.i == tok.i - 1 or cc.dep == "cc" and cc.i < tok.i:
                cc.head = garment.i
        tok.head = garment.i
        link_children(toks)


def _repair_colour_head(toks: list[Tok]) -> None:
    """Undo a misparse of colour lists: "a light gray and light green blouse" read as a colour with a blouse conjunct.

    The garment takes the colour's place and the colour (with its shade) becomes the garment's modifier.
    """
    for colour in toks:
        if colour.lower not in COLOURS or colour.dep not in NOUNISH_DEPS or colour.pos in ITEM_POS:
            continue
        garments = [c for c in _children(toks, colour, "conj") if c.pos in ITEM_POS and _item_word(toks, c) in WEARABLES]
        if not garments:
            continue
        garment = garments[0]
        garment.head, garment.dep = (garment.i, "ROOT") if colour.head == colour.i else (colour.head, colour.dep)
        for det in _children(toks, colour, "det", "poss", "nummod"):
            det.head = garment.i
        colour.head, colour.dep = garment.i, "amod"
        link_children(toks)



def _attribute_word(lower: str) -> bool:
    """A word that only describes: a colour, shade, pattern, normalised modifier ("button down") or its typo."""
    if lower in GARMENT_PARTS:  # "stripes", "print": things, unless the parse makes them modifiers
        return False
    return (
        lower in COLOURS or lower in SHADES or lower in PATTERNS or lower in HYPHENATED
        or correct_attribute(lower) is not None
    )


def _repair_modifier_verbs(toks: list[Tok]) -> None:
    """Undo colour and pattern words read as verbs: "... black and grey striped pants" as (grey, pants).

    The word becomes an adjective; a garment it took as object takes its place in the tree and it modifies the garment.
    """
    for word in toks:
        if word.pos not in ("VERB", "AUX") or not _attribute_word(word.lower):
            continue
        word.pos = "ADJ"
        garments = [c for c in _children(toks, word, "dobj", "obj", "conj", "npadvmod", "attr") if _is_wearable(toks, c)]
        if not garments:
            continue
        garment = garments[0]
        garment.head, garment.dep = (garment.i, "ROOT") if word.head == word.i else (word.head, word.dep)
        word.head, word.dep = garment.i, "amod"
        for c in _children(toks, word):
            if c.i != garment.i and c.i > word.i:
                c.head = garment.i
        link_children(toks)


def _is_wearable(toks: list[Tok], tok: Tok) -> bool:
    """A token naming something worn (typos and variants normalised), not as the kind of the next garment."""
    if tok.pos == "VERB" and tok.lower not in WEARABLES:  # "tied" is not a tie
        return False
    if tok.pos not in _WORN_POS:
        return False
    word = normalise_head(tok.text, tok.lemma)
    if word not in WEARABLES or _attribute_word(tok.lower):
        return False
    nxt = toks[tok.i + 1] if tok.i + 1 < len(toks) else None
    prev = toks[tok.i - 1] if tok.i > 0 else None
    if word == "top" and (nxt is not None and nxt.lower == "of" or prev is not None and prev.lower in ("on", "at")):
        return False
    if (word in GARMENT_COMPOUNDS or tok.lower in GARMENT_COMPOUNDS) and nxt is not None and _is_wearable(toks, nxt):
        return False  # "suit jacket", "dress shoes"
    return True


def _is_body_part(tok: Tok) -> bool:
    """A token naming a body part that modifiers describe (hair, beard ...), typos normalised."""
    return tok.pos in ("NOUN", "PROPN", "ADJ") and normalise_head(tok.text, tok.lemma) in ("hair", "beard", "ponytail")


def _is_phrase_modifier(toks: list[Tok], tok: Tok) -> bool:
    """A token that can stand between a determiner and its garment: "a", "his", "dark blue", "striped", "cargo"."""
    lower = tok.lower
    if tok.pos in ("DET", "NUM") or tok.dep == "poss" or lower in POSSESSIVES:
        return True
    if _attribute_word(lower) or lower in MATERIALS or lower in PURPOSE_GERUNDS or lower in SLEEVE_LENGTHS:
        return True
    if "-" in lower and any(ch.isalpha() for ch in lower):
        return True
    if HYPHENATED.get(lower) in PATTERNS and tok.i + 1 < len(toks):  # "a white stripe tank top"
        nxt = toks[tok.i + 1]
        return _is_wearable(toks, nxt) or _attribute_word(nxt.lower)
    if lower in LOCATION_NOUNS or lower in NOT_ATTRIBUTES:  # "on the front and grey shorts"
        return tok.pos == "DET"
    if tok.pos == "ADJ":
        return True
    if tok.pos == "VERB":
        return tok.tag in ("VBN", "VBD") and lower.endswith("ed")  # "ripped", "hooded"
    if tok.pos in ITEM_POS:
        word = normalise_head(tok.text, tok.lemma)
        if word in PERSON_NOUNS or word in BODY_PARTS and word != "sleeve":
            return False
        return tok.dep in ("compound", "nmod", "amod") and tok.head > tok.i or word == "sleeve"
    return False


def _phrase_start(toks: list[Tok], garment: Tok, floor: int) -> int:
    """The first token of the noun phrase ending at ``garment`` (not before ``floor``)."""
    start = garment.i
    k = garment.i - 1
    while k >= floor:
        tok = toks[k]
        if _is_phrase_modifier(toks, tok) and not _is_wearable(toks, tok):
            start = k
        elif tok.lower in ("and", "or", "&", ",") and k - 1 >= floor and start == k + 1 and toks[k + 1].pos != "DET" \
                and _attribute_word(toks[k - 1].lower):
            start = k  # "black and white": a colour list inside the phrase
        else:
            break
        k -= 1
    return start


@dataclass(frozen=True)
class _Phrase:
    """One garment phrase of a list: its first token, the token that stands in the list (the garment, or the
    container of "a pair of black shoes") and the garment."""

    start: int
    element: Tok
    garment: Tok


def _element(toks: list[Tok], garment: Tok) -> Tok:
    """``garment``, or the container it is counted by ("pair" in "a pair of black shoes")."""
    of = toks[garment.head]
    if of.lower == "of" and of.head < of.i and toks[of.head].lower in CONTAINERS:
        return toks[of.head]
    return garment


def _counted(toks: list[Tok], tok: Tok) -> Tok:
    """What a container counts ("shoes" for "pair" in "a pair of shoes"), else ``tok``."""
    if tok.lower in CONTAINERS:
        for of in _children(toks, tok, "prep"):
            if of.lower == "of":
                return next(iter(_children(toks, of, "pobj")), tok)
    return tok


def _garment_runs(toks: list[Tok]) -> list[list[_Phrase]]:
    """Garment phrases, grouped into lists separated only by commas, `and` or nothing (a garment alone is a list
    of one); a hair phrase is a list of its own."""
    runs: list[list[_Phrase]] = []
    current: list[_Phrase] = []
    floor = 0
    for tok in toks:
        if tok.pos not in _WORN_POS:  # neither a body part nor wearable
            continue
        if _is_body_part(tok):  # "shoulder length hiar": a phrase of its own, never part of a garment list
            start = _phrase_start(toks, tok, floor)
            runs += [current, [_Phrase(start, tok, tok)]] if current else [[_Phrase(start, tok, tok)]]
            current, floor = [], tok.i + 1
            continue
        if not _is_wearable(toks, tok):
            continue
        element = _element(toks, tok)
        start = _phrase_start(toks, element, floor)
        between = toks[current[-1].garment.i + 1 : start] if current else None
        new_clause = element.dep in _SUBJECT_DEPS and toks[element.head].i > element.i
        phrase = _Phrase(start, element, tok)
        if current and not new_clause and all(t.lower in _SEPARATORS for t in between):
            current.append(phrase)
        else:
            if current:
                runs.append(current)
            current = [] if new_clause else [phrase]
        floor = tok.i + 1
    if current:
        runs.append(current)
    return runs


def _phrase_is_whole(toks: list[Tok], phrase: _Phrase) -> bool:
    """True when every modifier of the phrase hangs, inside the phrase, from its element."""
    inside = range(phrase.start, phrase.element.i + 1)
    for tok in toks[phrase.start : phrase.element.i]:
        seen = 0
        while tok.i != phrase.element.i:
            if tok.head not in inside or seen > len(inside):
                return False
            tok = toks[tok.head]
            seen += 1
    return True


def _run_is_whole(toks: list[Tok], run: list[_Phrase]) -> bool:
    """True when the parser read the run as a list already: whole phrases, later elements conjuncts of earlier ones."""
    elements = {p.element.i for p in run}
    first = run[0].element
    if first.head in range(run[0].start, run[-1].garment.i + 1) and first.head != first.i:
        return False
    for k, phrase in enumerate(run):
        if not _phrase_is_whole(toks, phrase):
            return False
        element = phrase.element
        if k and not (element.dep in ("conj", "appos") and element.head in elements and element.head < element.i):
            return False
    return True


def _rebuild_run(toks: list[Tok], run: list[_Phrase]) -> None:
    """Make the run a list: the first element takes the run's place in the tree, the others are its conjuncts,
    and each modifier hangs from its own element."""
    span = range(run[0].start, run[-1].garment.i + 1)
    outside_heads = [t for t in toks[span.start : span.stop] if t.head not in span or t.head == t.i]
    attached = [t for t in outside_heads if t.head != t.i]
    anchor = next((t for t in attached if t.head < span.start), attached[0] if attached else None)
    old_heads = [t.head for t in toks]
    first = run[0].element
    if anchor is None:
        first.head, first.dep = first.i, "ROOT"
    else:
        first.head, first.dep = anchor.head, anchor.dep
    owner: dict[int, Tok] = {}
    for k, phrase in enumerate(run):
        element = phrase.element
        if element.pos not in ITEM_POS:
            element.pos = "NOUN"
        if k:
            element.head, element.dep = first.i, "conj"
        if element is not phrase.garment:  # "a pair of ...": the garment stays under its container
            of = toks[phrase.garment.head]
            of.head, phrase.garment.head = element.i, of.i
        inside = range(phrase.start, element.i + 1)
        for tok in toks[phrase.start : element.i]:
            owner[tok.i] = element
            if tok.lower in _SEPARATORS and tok.pos in ("CCONJ", "PUNCT"):
                tok.head = element.i  # "and" inside "black and white"
                continue
            if tok.pos in ("VERB", "AUX"):
                tok.pos = "ADJ"
            pattern_head = HYPHENATED.get(toks[tok.head].lower) in PATTERNS  # "pink" in "pink stripe top"
            if tok.head not in inside or tok.head == tok.i or pattern_head:
                tok.head = element.i
                tok.dep = "det" if tok.pos == "DET" else "poss" if tok.dep == "poss" else (
                    "compound" if tok.pos in ITEM_POS else "amod")
        if k:
            for sep in toks[run[k - 1].garment.i + 1 : phrase.start]:
                sep.head, sep.dep = first.i, "cc" if sep.pos == "CCONJ" else "punct"
    for tok in toks:
        if tok.i in span or old_heads[tok.i] not in span:
            continue
        if old_heads[tok.i] in owner:  # hung on a modifier: goes to that modifier's element
            tok.head = owner[old_heads[tok.i]].i
    _break_cycles(toks, span)
    link_children(toks)


def _break_cycles(toks: list[Tok], span: range) -> None:
    """After a rebuild, a token outside ``span`` that heads the run and hangs from it again becomes the root."""
    # 0: not reached yet, 1: on the current walk, 2: known to reach a root (breaking a cycle never changes that)
    state = [0] * len(toks)
    for tok in toks:
        walk = []
        cur = tok
        while cur.head != cur.i and not state[cur.i]:
            state[cur.i] = 1
            walk.append(cur.i)
            cur = toks[cur.head]
        cycle_at = cur.head != cur.i and state[cur.i] == 1
        for i in walk:
            state[i] = 2
        if cycle_at:  # a cycle through cur
            cycle = [cur]
            nxt = toks[cur.head]
            while nxt.i != cur.i:
                cycle.append(nxt)
                nxt = toks[nxt.head]
            outside = [t for t in cycle if t.i not in span]
            breaker = next((t for t in outside if t.head in span), outside[0] if outside else cycle[0])
            breaker.head, breaker.dep = breaker.i, "ROOT"


def _repair_garment_runs(toks: list[Tok]) -> None:
    """Undo misparses of garment lists without commas: "a white t-shirt blue jean shorts and black sandals" read as
    one noun phrase (t-shirt a modifier of shorts), "a pink top and black leggings" with top an adjective.

    Garment phrases in a row (separated by nothing, commas or `and`) become one list: the first garment takes the
    list's place in the tree, the others become its conjuncts, each phrase's modifiers its own garment's. A list the
    parser read correctly is left as it is; so is a single phrase, unless its modifiers hang outside it
    ("a black white and grey striped hoodie" with `striped` read as the verb of the sentence).
    """
    for run in _garment_runs(toks):
        if not _run_is_whole(toks, run):
            _rebuild_run(toks, run)


def _repair_over_lists(toks: list[Tok]) -> None:
    """In "a jacket over a white shirt, blue jeans and boots", what follows the inner garment is worn by the person.

    `over` / `under` right after a torso garment belongs to that garment. Conjuncts of its object that are not torso
    garments (trousers, shoes, accessories) become conjuncts of the outer garment, so the verb that governs it
    distributes over them.
    """
    for prep in toks:
        if prep.lower not in _OVER_PREPS or prep.dep != "prep" or prep.i == 0:
            continue
        outer = toks[prep.i - 1]  # "a jacket over a shirt", whatever the parser hung `over` on
        if not _is_wearable(toks, outer) or normalise_head(outer.text, outer.lemma) not in UPPER_BODY:
            continue
        if prep.head != outer.i:
            prep.head = outer.i
            link_children(toks)
        for inner in _children(toks, prep, "pobj"):
            if normalise_head(inner.text, inner.lemma) not in UPPER_BODY:
                continue
            for conj in _children(toks, inner, "conj"):
                worn = _counted(toks, conj)
                if _is_wearable(toks, worn) and normalise_head(worn.text, worn.lemma) not in UPPER_BODY:
                    conj.head = outer.i
                    for c in _children(toks, inner, "cc", "punct"):
                        if c.i < conj.i:
                            c.head = outer.i
                    link_children(toks)


def _repair_comparisons(toks: list[Tok]) -> None:
    """"dressed like a businessman in a dark suit": the businessman is a comparison, not a person in the picture.

    The noun after like / as under a verb of dress or appearance is marked (COMPARISON_DEP) and its prepositional
    phrases move to the verb.
    """
    for prep in toks:
        verb = toks[prep.head]
        if prep.lower not in COMPARISON_PREPS or prep.dep != "prep" or verb.lemma.lower() not in COMPARISON_VERBS:
            continue
        for noun in _children(toks, prep, "pobj"):
            if _is_wearable(toks, noun):  # "looks like a coat": the coat is there
                continue
            noun.dep = COMPARISON_DEP
            for inner in _children(toks, noun, "prep"):
                inner.head = prep.head
            link_children(toks)


def _repair_have_on(toks: list[Tok]) -> None:
    """"he has on a leather jacket" with `on` read as a preposition of another verb: `on` is the particle of has,
    the garment its object."""
    for on in toks[1:]:
        have = toks[on.i - 1]
        if on.lower != "on" or have.lemma.lower() != "have" or have.pos not in ("VERB", "AUX") or on.head == have.i:
            continue
        for pobj in _children(toks, on, "pobj"):
            pobj.head, pobj.dep = have.i, "dobj"
        on.head, on.dep = have.i, "prt"
        link_children(toks)


def repair_tree(toks: list[Tok]) -> None:
    """Apply every repair, in order, to one caption's tokens (in place)."""
    _repair_colour_head(toks)
    _repair_have_on(toks)
    _repair_modifier_verbs(toks)
    _repair_coordination(toks)
    _repair_sleeve_head(toks)
    _repair_garment_runs(toks)
    _repair_part_attachment(toks)
    _repair_over_lists(toks)
    _repair_comparisons(toks)
