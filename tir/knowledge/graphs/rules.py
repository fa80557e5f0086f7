"""Rules that turn a dependency tree of a pedestrian description into a scene graph.

The described person is one object; pronouns, relative pronouns and repeated person nouns resolve to it.
Garments, body parts and items are objects with normalised heads; their modifiers become attributes
(multi-word colours kept whole, multi-colour words split, sleeves normalised); verbs and prepositions
become relations attached to the subject they describe (conjoined verbs, relative clauses, `with` rules).
The conventions are in docs/GRAPH_CONVENTIONS.md.
"""

from __future__ import annotations

from tir.knowledge.graphs.lexicon import (
    ATTRIBUTE_WORDS,
    BODY_PARTS,
    COLOURS,
    COPULAS,
    COUNTS,
    DRESS_VERBS,
    GARMENT_PARTS,
    GARMENTS,
    HYPHENATED,
    INDEFINITE_THINGS,
    IT_PRONOUNS,
    MATERIALS,
    NON_OBJECTS,
    NOT_ATTRIBUTES,
    PATTERNS,
    PERSON_NOUNS,
    PERSON_ONLY_NOT_ATTRIBUTES,
    PERSON_PRONOUNS,
    PERSON_VERBS,
    PLURAL_ONLY,
    PURPOSE_GERUNDS,
    SHADES,
    SLEEVE_LENGTHS,
    SPELLING,
    WEARABLES,
)
from tir.knowledge.graphs.normalise import correct_attribute, correct_typo, normalise_head, split_hyphenated, verb_lemma
from tir.knowledge.graphs.schema import Attribute, Graph, Object, Relation
from tir.knowledge.graphs.repairs import COMPARISON_DEP, repair_tree
from tir.knowledge.graphs.repairs import CONTAINERS as _CONTAINERS
from tir.knowledge.graphs.repairs import ITEM_POS as _ITEM_POS
from tir.knowledge.graphs.repairs import NOUNISH_DEPS as _NOUNISH_DEPS
from tir.knowledge.graphs.tree import Tok
from tir.knowledge.graphs.tree import children as _children

_MODIFIER_DEPS = frozenset("amod compound nmod advmod npadvmod nummod quantmod".split())
_SUBJECT_DEPS = frozenset(("nsubj", "nsubjpass"))
_OBJECT_DEPS = frozenset(("dobj", "obj"))
_LOCATION_PREPS = {"front": "in front of", "top": "on top of", "back": "in back of"}
_OTHER_MARKERS = frozenset("another other second".split())
_KNOWN = GARMENTS | BODY_PARTS | PLURAL_ONLY | frozenset(SPELLING)
_PARTICIPLES = frozenset(("VBN", "VBD"))
_NOT_ATTRIBUTE_POS = frozenset("DET NUM PRON PART CCONJ PUNCT ADP SYM".split())  # modifiers that never give one
_WITH_ITEMS = GARMENTS | PLURAL_ONLY | BODY_PARTS | GARMENT_PARTS  # "walking with a bag" is (person, with, bag); with anyone else, walk with


class _Builder:
    """Accumulates one caption's graph while the rules walk its tokens."""

    def __init__(self, toks: list[Tok]) -> None:
        self.toks = toks
        self.objects: list[Object] = []
        self.attributes: list[Attribute] = []
        self.attribute_keys: set[tuple[int, str]] = set()
        self.relations: list[Relation] = []
        self.relation_keys: set[tuple[int, str, int]] = set()
        self.mention: dict[int, int] = {}  # token index -> object id
        self.person: int | None = None
        self.colours: dict[int, set[str]] = {}
        self.sides: dict[int, str] = {}
        self.attribute_claimed: dict[int, set[int]] = {}  # token index -> objects it was already used for
        self.counts: dict[int, int] = {}  # object id -> how many things it stands for ("two shirts")

    def claim(self, token: int, obj: int) -> None:
        self.attribute_claimed.setdefault(token, set()).add(obj)

    # ------------------------------------------------------------------ objects
    def add_object(self, text: str, head: str, start: int, end: int) -> int:
        self.objects.append(Object(len(self.objects), text, head, start, end))
        return len(self.objects) - 1

    def add_attribute(self, obj: int, text: str, start: int, end: int) -> None:
        if text and (obj, text) not in self.attribute_keys:
            self.attribute_keys.add((obj, text))
            self.attributes.append(Attribute(obj, text, start, end))

    def add_relation(self, subj: int | None, predicate: str, obj: int | None, start: int, end: int) -> None:
        if subj is None or obj is None or subj == obj or not predicate:
            return
        key = (subj, predicate, obj)
        if key not in self.relation_keys:
            self.relation_keys.add(key)
            self.relations.append(Relation(subj, predicate, obj, start, end))

    def graph(self) -> Graph:
        """The graph, a counted object ("two bags") repeated with its attributes and relations."""
        for obj, count in self.counts.items():
            original = self.objects[obj]
            attributes = [a for a in self.attributes if a.object == obj]
            relations = [r for r in self.relations if obj in (r.subject, r.object)]
            for _ in range(count - 1):
                copy = self.add_object(original.text, original.head, original.start, original.end)
                self.attributes += [Attribute(copy, a.text, a.start, a.end) for a in attributes]
                self.relations += [
                    Relation(copy if r.subject == obj else r.subject, r.predicate, copy if r.object == obj else r.object, r.start, r.end)
                    for r in relations
                ]
        return Graph(self.objects, self.attributes, self.relations)


def _conjuncts(toks: list[Tok], tok: Tok) -> list[Tok]:
    """``tok`` and the tokens conjoined to it (a, b and c)."""
    if not any(toks[c].dep == "conj" for c in tok.children):  # the common case
        return [tok]
    out, stack = [], [tok]
    while stack:
        cur = stack.pop()
        out.append(cur)
        stack.extend(reversed(_children(toks, cur, "conj")))
    return sorted(out, key=lambda t: t.i)


def _is_person_word(tok: Tok) -> bool:
    return tok.lower in PERSON_NOUNS or tok.lemma.lower() in PERSON_NOUNS


def _is_person_pronoun(tok: Tok) -> bool:
    return tok.pos == "PRON" and tok.lower in PERSON_PRONOUNS and tok.dep != "poss" and tok.tag != "PRP$"


def _is_compound_modifier(toks: list[Tok], tok: Tok) -> bool:
    """True for a noun-compound modifier of an item: "tennis" in "tennis shoes", "running" in "running shoes"."""
    if tok.dep not in ("compound", "amod", "nmod") or tok.head <= tok.i or toks[tok.head].pos not in _ITEM_POS:
        return False
    return tok.dep != "amod" or tok.lower in PURPOSE_GERUNDS or tok.lower in MATERIALS


def _is_sleeve_word(lower: str) -> bool:
    """sleeve, sleeves, sleeved, or a typo of sleeve (sleev)."""
    return lower in ("sleeve", "sleeves", "sleeved") or correct_typo(lower) == "sleeve"


def _pattern_before_garment(toks: list[Tok], tok: Tok) -> bool:
    """True for a pattern noun among a garment's modifiers: "stripe" in "a blue and white stripe tank top"."""
    if HYPHENATED.get(tok.lower) not in PATTERNS:
        return False
    cur = tok
    for _ in range(4):
        if cur.dep not in ("amod", "compound", "nmod", "conj") or cur.head == cur.i:
            return False
        cur = toks[cur.head]
        if cur.i > tok.i and cur.pos in _ITEM_POS and normalise_head(cur.text, cur.lemma) in WEARABLES:
            return True
    return False


def _is_object_token(toks: list[Tok], tok: Tok) -> bool:
    """True when ``tok`` names a thing (garment, body part, item), not a modifier or a location."""
    if tok.pos not in _ITEM_POS and tok.dep not in _NOUNISH_DEPS:  # the common case: every branch below says no
        return False
    lower, lemma = tok.lower, tok.lemma.lower()
    if tok.tag in _PARTICIPLES and lower not in _KNOWN:  # "dressed in" is a verb, not a dress
        return False
    if tok.dep == COMPARISON_DEP:
        return False
    typo = tok.pos not in ("VERB", "AUX") and tok.dep in _NOUNISH_DEPS and lower not in ATTRIBUTE_WORDS \
        and correct_typo(lower) is not None
    known = lower in _KNOWN or lemma in _KNOWN or typo  # "hiar", read as an adjective
    if lower in INDEFINITE_THINGS or lemma in INDEFINITE_THINGS:  # "holding something in his hand"
        return tok.dep in _NOUNISH_DEPS
    if tok.pos in _ITEM_POS:
        if tok.pos == "PROPN" and not known and correct_typo(lower) is None:
            return False
    elif not (known and tok.dep in _NOUNISH_DEPS):
        return False
    if _is_compound_modifier(toks, tok) or _pattern_before_garment(toks, tok):
        return False
    if not any(ch.isalpha() for ch in lower) or lower in NOT_ATTRIBUTES and not known:
        return False
    head = normalise_head(tok.text, tok.lemma)
    if head in ("back", "side"):  # "her back" is a body part, "the back" is a location
        return any(c.dep == "poss" for c in _children(toks, tok))
    if head == "top":  # "a black top" is a garment; "on top of", "the top of" are locations
        before = toks[tok.i - 1].lower if tok.i and lower == "top" else ""
        return not any(p.lower == "of" for p in _children(toks, tok, "prep")) and before not in ("on", "at")
    if (head in COLOURS or HYPHENATED.get(lower, lower) in ATTRIBUTE_WORDS or correct_attribute(lower)) and not known:
        return False
    return head not in NON_OBJECTS


class _Rules:
    """One pass of the rules over one caption's tokens."""

    def __init__(self, toks: list[Tok]) -> None:
        self.toks = toks
        self.b = _Builder(toks)

    # ------------------------------------------------------------------ objects
    def find_objects(self) -> None:
        toks, b = self.toks, self.b
        person_word = [_is_person_word(t) for t in toks]
        pronoun = [_is_person_pronoun(t) for t in toks]
        thing = [_is_object_token(toks, t) for t in toks]  # each token judged once: the rules read it twice
        has_person = any(person_word) or any(pronoun)
        if not has_person and any(o and not p for o, p in zip(thing, person_word)):
            b.person = b.add_object("", "person", 0, 0)
        for tok in toks:
            if pronoun[tok.i]:
                if b.person is None:
                    b.person = b.add_object(tok.text, PERSON_PRONOUNS[tok.lower], tok.start, tok.end)
                if tok.lower not in ("who", "whom") or toks[tok.head].dep != "relcl":
                    b.mention[tok.i] = b.person
            elif person_word[tok.i] and tok.dep not in ("compound", COMPARISON_DEP):
                self._person_mention(tok)
            elif thing[tok.i]:
                self._thing_mention(tok)

    def _person_mention(self, tok: Tok) -> None:
        b = self.b
        head = normalise_head(tok.text, tok.lemma)
        if b.person is None:
            b.person = b.add_object(tok.text, head, tok.start, tok.end)
            b.mention[tok.i] = b.person
            return
        markers = {c.lower for c in _children(self.toks, tok, "det", "amod")}
        other = bool(markers & _OTHER_MARKERS) or tok.dep in ("pobj", "dobj") and not self._under_of(tok)
        if other:
            b.mention[tok.i] = b.add_object(tok.text, head, tok.start, tok.end)
        else:
            b.mention[tok.i] = b.person
            if not b.objects[b.person].text:  # an implicit person gets the first noun that names it
                b.objects[b.person] = Object(b.person, tok.text, head, tok.start, tok.end)

    def _under_of(self, tok: Tok) -> bool:
        return self.toks[tok.head].lower == "of"

    def _thing_mention(self, tok: Tok) -> None:
        toks, b = self.toks, self.b
        if tok.lower in _CONTAINERS or tok.lemma.lower() in _CONTAINERS:
            return
        head = normalise_head(tok.text, tok.lemma)
        kids = _children(toks, tok)
        mods = {c.lower for c in kids}
        colours = {m for m in mods if m in COLOURS}
        side = next((m for m in mods if m in ("left", "right")), "")
        for obj in reversed(b.objects):
            if obj.head != head or obj.id == b.person:
                continue
            if mods & _OTHER_MARKERS:
                break
            if side and b.sides.get(obj.id) and b.sides[obj.id] != side:
                break
            known = b.colours.get(obj.id, set())
            if colours and known and not (colours & known):
                break
            b.mention[tok.i] = obj.id
            b.colours.setdefault(obj.id, set()).update(colours)
            return
        obj = b.add_object(self._object_text(tok), head, tok.start, tok.end)
        b.mention[tok.i] = obj
        b.colours[obj] = colours
        count = max((COUNTS.get(c.lower, 1) for c in kids if c.dep == "nummod"), default=1)
        if count > 1 and head not in BODY_PARTS:
            b.counts[obj] = count
        if side:
            b.sides[obj] = side

    def _object_text(self, tok: Tok) -> str:
        return tok.text

    # ------------------------------------------------------------------ resolution
    def obj_of(self, tok: Tok) -> int | None:
        """The object a token refers to (containers, `it`, `who`, pronouns resolved)."""
        toks, b = self.toks, self.b
        if tok.i in b.mention:
            return b.mention[tok.i]
        lower = tok.lower
        if lower in _CONTAINERS or tok.lemma.lower() in _CONTAINERS:
            for prep in _children(toks, tok, "prep"):
                if prep.lower == "of":
                    for pobj in _children(toks, prep, "pobj"):
                        return self.obj_of(pobj)
            return None
        if lower in ("who", "whom", "that", "which") and toks[tok.head].dep == "relcl":
            return self.obj_of(toks[toks[tok.head].head])
        if lower in IT_PRONOUNS:
            own = self._governing_object(tok)  # "a logo on it": it is not the logo
            earlier = [o for i, o in b.mention.items() if i < tok.i and o not in (b.person, own)]
            return earlier[-1] if earlier else None
        if _is_person_pronoun(tok):
            return self.person()
        return None

    def _governing_object(self, tok: Tok) -> int | None:
        """The object of the nearest noun above ``tok`` in the tree."""
        toks = self.toks
        while tok.head != tok.i:
            tok = toks[tok.head]
            if tok.i in self.b.mention:
                return self.b.mention[tok.i]
        return None

    def is_person(self, obj: int) -> bool:
        """True for the described person or another person noun."""
        return obj == self.b.person or self.b.objects[obj].head in PERSON_NOUNS

    def person_above(self, tok: Tok) -> int:
        """The nearest person above ``tok`` in the tree, else the described person."""
        toks = self.toks
        while tok.head != tok.i:
            tok = toks[tok.head]
            obj = self.b.mention.get(tok.i)
            if obj is not None and self.is_person(obj):
                return obj
        return self.person()

    def person(self) -> int:
        """The person's object id, creating an implicit (empty-span) person when the caption names none."""
        if self.b.person is None:
            self.b.person = self.b.add_object("", "person", 0, 0)
        return self.b.person

    def targets(self, tok: Tok) -> list[tuple[Tok, int]]:
        """(token, object) for ``tok`` and its conjuncts that are objects."""
        out = []
        toks = self.toks
        for conj in _conjuncts(toks, tok):
            if conj.pos in ("VERB", "AUX") and conj is not tok:
                continue
            following = toks[conj.i + 1] if conj.i + 1 < len(toks) else None
            if conj is not tok and following is not None and following.dep == "conj" and following.pos in ("AUX", "VERB"):
                continue  # the subject of a following clause, not one more object
            obj = self.obj_of(conj)
            if obj is not None:
                out.append((conj, obj))
        return out

    def subject_of(self, verb: Tok) -> int:
        """Who or what does ``verb``: its subject, the noun a participle modifies, or the person."""
        toks = self.toks
        seen = set()
        by_person = verb_lemma(verb.lower, verb.lemma.lower()) in PERSON_VERBS
        while verb.i not in seen:
            seen.add(verb.i)
            for subj in _children(toks, verb, *_SUBJECT_DEPS):
                obj = self.obj_of(subj)
                if obj is not None:
                    return obj
                if subj.lower in ("who", "that", "which"):
                    break
                return self.person()
            head = toks[verb.head]
            if verb.dep in ("acl", "relcl") or (verb.dep == "conj" and head.pos in _ITEM_POS):
                obj = self.obj_of(head)
                if obj is not None and by_person and not self.is_person(obj):
                    return self.person_above(head)  # "a man with a bag wearing a coat": the man wears it
                if obj is not None:
                    return obj
            if verb.head == verb.i or verb.dep not in ("conj", "xcomp", "acl", "relcl", "advcl", "ccomp", "pcomp"):
                break
            verb = head
        return self.person()

    # ------------------------------------------------------------------ attributes
    def find_attributes(self) -> None:
        toks, b = self.toks, self.b
        for tok in toks:
            obj = b.mention.get(tok.i)
            if obj is None:
                continue
            for mod in _children(toks, tok):
                if mod.dep in _MODIFIER_DEPS and mod.i < tok.i:
                    self._modifier(obj, mod, tok)
                elif mod.dep == "amod":
                    self._modifier(obj, mod, tok)
            copula = toks[tok.head] if tok.dep in _SUBJECT_DEPS else None
            if copula is None and tok.i + 1 < len(toks) and toks[tok.i + 1].dep == "conj":
                copula = toks[tok.i + 1]  # "a bag and his shoes are white": shoes misread as a conjunct
                if _children(toks, copula, *_SUBJECT_DEPS):
                    copula = None
            if copula is not None and copula.lemma.lower() in COPULAS | {"look"}:
                for pred in _children(toks, copula, "acomp", "attr"):
                    if self._governs_object(pred):
                        continue  # "is dressed in a coat": a relation, not a state
                    if pred.pos in ("ADJ", "VERB") or pred.lower in COLOURS or pred.lower in ATTRIBUTE_WORDS:
                        for conj in _conjuncts(toks, pred):
                            self._modifier(obj, conj, tok)

    def _governs_object(self, word: Tok) -> bool:
        """True when a preposition under ``word`` has an object ("dressed in a coat")."""
        return any(self._prep_phrase(prep)[1] for prep in _children(self.toks, word, "prep"))

    def _modifier(self, obj: int, mod: Tok, head: Tok) -> None:
        """Add the attributes that modifier ``mod`` (and its conjuncts) gives object ``obj``."""
        toks = self.toks
        for tok in _conjuncts(toks, mod):
            if tok is not mod and tok.i > head.i:
                continue
            self._one_modifier(obj, tok, head)

    def _one_modifier(self, obj: int, mod: Tok, head: Tok) -> None:
        toks, b = self.toks, self.b
        if mod.pos in _NOT_ATTRIBUTE_POS:
            return
        lower = correct_attribute(mod.lower) or mod.lower
        if lower in NOT_ATTRIBUTES:
            return
        if obj == b.person and (lower in PERSON_ONLY_NOT_ATTRIBUTES or mod.dep == "compound"):
            return
        if obj in b.attribute_claimed.get(mod.i, ()):
            return
        # "short sleeve shirt", "long sleeved": the length goes with the sleeve word
        if _is_sleeve_word(lower):
            for length in _children(toks, mod, "amod", "advmod", "compound", "npadvmod"):
                if length.lower in SLEEVE_LENGTHS:
                    b.add_attribute(obj, f"{SLEEVE_LENGTHS[length.lower]}-sleeved", length.start, mod.end)
                    b.claim(length.i, obj)
                    return
            prev = toks[mod.i - 1] if mod.i > 0 else None
            if prev is not None and prev.lower in SLEEVE_LENGTHS:
                b.add_attribute(obj, f"{SLEEVE_LENGTHS[prev.lower]}-sleeved", prev.start, mod.end)
                b.claim(prev.i, obj)
            return
        nxt = toks[mod.i + 1] if mod.i + 1 < len(toks) else None
        if lower in SLEEVE_LENGTHS and nxt is not None and _is_sleeve_word(nxt.lower) and nxt.i < head.i:
            return  # "long sleeve grey shirt": the sleeve word gives long-sleeved
        prev = toks[mod.i - 1] if mod.i > 0 else None
        if prev is not None and obj not in b.attribute_claimed.get(prev.i, ()) and self._joins_previous(prev, mod):
            words = f"{prev.lower} {lower}"
            b.add_attribute(obj, HYPHENATED.get(words, words), prev.start, mod.end)
            b.claim(prev.i, obj)
            self._inner_modifiers(obj, mod, head)
            return
        if nxt is not None and nxt.i != head.i and f"{lower} {nxt.lower}" in HYPHENATED:
            b.add_attribute(obj, HYPHENATED[f"{lower} {nxt.lower}"], mod.start, nxt.end)
            b.claim(nxt.i, obj)
            return
        if nxt is not None and nxt.i < head.i and lower in SHADES and nxt.lower in COLOURS and nxt.lower not in SHADES:
            b.add_attribute(obj, f"{lower} {nxt.lower}", mod.start, nxt.end)
            b.claim(nxt.i, obj)
            return
        if lower in ("colored", "coloured", "color", "colour"):
            for inner in _children(toks, mod):
                if inner.i < mod.i:
                    self._one_modifier(obj, inner, head)
            return
        if mod.dep == "compound" or mod.pos in _ITEM_POS and mod.dep != "amod" or lower in PURPOSE_GERUNDS:
            lemma = mod.lemma.lower()
            if not (lower in COLOURS or lower in MATERIALS or lemma in MATERIALS or lower in PATTERNS
                    or lower in HYPHENATED or "-" in lower):
                self._inner_modifiers(obj, mod, head)  # "a green messenger bag": green is the bag's
                return
            lower = lemma if lemma in MATERIALS else lower
        if mod.pos == "ADV" and mod.dep == "advmod" and lower not in HYPHENATED and "-" not in lower:
            return
        if not any(ch.isalpha() for ch in lower):
            return
        for text in split_hyphenated(lower) if ("-" in lower or "/" in lower or lower in HYPHENATED) else [lower]:
            if text not in NOT_ATTRIBUTES:
                b.add_attribute(obj, text, mod.start, mod.end)
        self._inner_modifiers(obj, mod, head)

    def _inner_modifiers(self, obj: int, mod: Tok, head: Tok) -> None:
        """Modifiers of a modifier that describe the object too: "dark" in "dark colored", "short" in "short grey"."""
        for inner in _children(self.toks, mod, "advmod", "npadvmod", "amod", "compound"):
            if inner.i < mod.i and (inner.lower in COLOURS or inner.dep == "amod" or inner.pos == "ADJ"
                                    or inner.lower in HYPHENATED):
                self._one_modifier(obj, inner, head)

    @staticmethod
    def _joins_previous(prev: Tok, mod: Tok) -> bool:
        """True when ``prev`` and ``mod`` form one attribute: "dark brown", "shoulder length"."""
        if prev.i != mod.i - 1 or prev.dep == "cc":
            return False
        if f"{prev.lower} {mod.lower}" in HYPHENATED:
            return True
        return prev.lower in SHADES and mod.lower in COLOURS and mod.lower not in SHADES

    # ------------------------------------------------------------------ relations
    def find_relations(self) -> None:
        toks = self.toks
        for tok in toks:
            if tok.pos in ("VERB", "AUX") and tok.dep not in ("aux", "auxpass"):
                self._verb(tok)
            elif tok.i in self.b.mention:
                for prep in _children(toks, tok, "prep"):
                    self._noun_prep(tok, prep)
        self._orphan_garments()

    def _verb(self, verb: Tok) -> None:
        toks, b = self.toks, self.b
        lemma = verb_lemma(verb.lower, verb.lemma.lower())
        subject = None
        kids = _children(toks, verb)  # read once: the rules change no head
        advmods = [a for a in kids if a.dep == "advmod"]
        particles = [p.lower for p in kids if p.dep == "prt"]
        particles += [p.lower for p in kids if p.dep in ("prep", "advmod") and p.lower == "on" and not p.children]  # has X on
        predicate = "have on" if lemma == "have" and "on" in particles else lemma
        direct = []
        for dobj in kids:
            if dobj.dep in _OBJECT_DEPS:
                direct.extend(self.targets(dobj))
        if direct and lemma not in COPULAS:
            subject = self.subject_of(verb)
            for _, obj in direct:
                b.add_relation(subject, predicate, obj, verb.start, verb.end)
        preps = [(p, "") for p in kids if p.dep in ("prep", "agent", "dative")]
        preps += [(p, "away ") for a in advmods if a.lower == "away" for p in _children(toks, a, "prep")]
        for prep, away in preps:
            pred, objs, end = self._prep_phrase(prep)
            if not objs or pred == "on" and "on" in particles:
                continue
            if direct:
                first = direct[0][1]
                for pobj, obj in objs:
                    if pred == "with" and self._absolute_with(pobj, obj):
                        continue
                    subj = self._with_subject(first, pobj) if pred == "with" else first
                    b.add_relation(subj, pred, obj, prep.start, end)
                continue
            if subject is None:
                subject = self.subject_of(verb)
            away = away or ("away " if any(a.lower == "away" for a in advmods) else "")
            full = pred if lemma in COPULAS else f"{lemma} {away}{pred}"
            for pobj, obj in objs:
                if pred == "with" and self._absolute_with(pobj, obj):
                    continue
                if pred == "with" and lemma not in COPULAS and b.objects[obj].head in _WITH_ITEMS:
                    b.add_relation(self._with_subject(subject, pobj), "with", obj, prep.start, end)
                elif pred == "in" and lemma not in DRESS_VERBS and b.objects[obj].head in WEARABLES:
                    b.add_relation(subject, "in", obj, prep.start, end)  # "walking in a white shirt": in, as "a man in"
                else:
                    b.add_relation(subject, full, obj, verb.start if full != pred else prep.start, end)

    def _noun_prep(self, noun: Tok, prep: Tok) -> None:
        b = self.b
        subject = b.mention[noun.i]
        pred, objs, end = self._prep_phrase(prep)
        for pobj, obj in objs:
            if pred == "with":
                if self._absolute_with(pobj, obj):
                    continue
                b.add_relation(self._with_subject(subject, pobj), pred, obj, prep.start, end)
            else:
                b.add_relation(subject, pred, obj, prep.start, end)

    def _prep_phrase(self, prep: Tok) -> tuple[str, list[tuple[Tok, int]], int]:
        """(predicate, [(object token, object id)], end offset) of a preposition and its object."""
        toks = self.toks
        pred = prep.lower
        if toks[prep.head].lower == "next" or prep.lower == "next":
            pred = "next to"
        for pobj in _children(toks, prep, "pobj"):
            location = pobj.lower
            if location in _LOCATION_PREPS and pobj.i not in self.b.mention:
                for of in _children(toks, pobj, "prep"):
                    if of.lower == "of":
                        named = _LOCATION_PREPS[location]
                        phrase = named if named.startswith(pred) else f"{pred} {location} of"
                        inner = [t for pobj2 in _children(toks, of, "pobj") for t in self.targets(pobj2)]
                        return phrase, inner, of.end
            return pred, self.targets(pobj), prep.end
        for pcomp in _children(toks, prep, "pcomp"):
            if pcomp.lower == "of" or pcomp.pos == "ADP":
                for pobj in _children(toks, pcomp, "pobj"):
                    return f"{pred} {pcomp.lower}", self.targets(pobj), pcomp.end
        return pred, [], prep.end

    def _with_subject(self, subject: int, pobj: Tok) -> int:
        """`with` attaches a garment part to the garment, a separate item to the person."""
        b = self.b
        head = b.objects[self.obj_of(pobj)].head if self.obj_of(pobj) is not None else ""
        if subject == b.person:
            return subject
        subject_head = b.objects[subject].head
        if head in GARMENT_PARTS or subject_head in BODY_PARTS and head in BODY_PARTS:
            return subject
        if head in GARMENTS or head in PLURAL_ONLY or head in BODY_PARTS:
            return self.person()
        return subject

    def _absolute_with(self, pobj: Tok, obj: int) -> bool:
        """True for "with X V-ing Y" / "with X behind Y": only the inner triple is kept."""
        toks = self.toks
        for child in _children(toks, pobj, "acl", "prep"):
            if child.dep == "acl" and _children(toks, child, *_OBJECT_DEPS, "prep"):
                if verb_lemma(child.lower, child.lemma.lower()) in PERSON_VERBS and self.b.objects[obj].head not in BODY_PARTS:
                    continue  # "with a bag wearing a coat": the person wears the coat
                return True
            if child.dep == "prep":
                for inner in _children(toks, child, "pobj"):
                    target = self.obj_of(inner)
                    if target is not None and inner.lower not in IT_PRONOUNS and self.b.objects[target].head in BODY_PARTS | {"camera"}:
                        return True
        return False

    def _orphan_garments(self) -> None:
        """Garments in a broken list ("in a shirt, jeans, shoes") get the predicate of the list's start."""
        b = self.b
        person = b.person
        if person is None:
            return
        reached = {r.object for r in b.relations}
        for tok in self.toks:
            obj = b.mention.get(tok.i)
            if obj is None or obj in reached or obj == person or b.objects[obj].head not in WEARABLES:
                continue
            before = [r for r in b.relations if r.subject == person and r.start < tok.start
                      and b.objects[r.object].head in WEARABLES and r.predicate in ("wear", "in", "dress in", "have on")]
            if before:
                b.add_relation(person, before[-1].predicate, obj, before[-1].start, before[-1].end)
                reached.add(obj)


def build_graph(toks: list[Tok]) -> Graph:
    """The scene graph of one parsed caption."""
    repair_tree(toks)
    rules = _Rules(toks)
    rules.find_objects()
    rules.find_attributes()
    rules.find_relations()
    return rules.b.graph()
