"""Normalising object heads (plural-only words, spelling variants, typos) and attribute strings."""

from __future__ import annotations

from functools import lru_cache

from tir.knowledge.graphs.lexicon import (
    ATTRIBUTE_SPELLING,
    ATTRIBUTE_TYPO_TARGETS,
    BODY_PARTS,
    COLOURS,
    GARMENTS,
    HYPHENATED,
    MATERIALS,
    PERSON_NOUNS,
    PATTERNS,
    PLURAL_ONLY,
    REAL_WORDS_NEAR_ATTRIBUTES,
    SHADES,
    SLEEVE_LENGTHS,
    SPELLING,
    VERB_FORMS,
    VERB_LEMMAS,
)

# real words one edit away from a garment: never "corrected"
_REAL_WORDS = frozenset(
    "short shorts skirt shift shirts parts part pints paints pans means beans deans packet scandal shows "
    "wheels heals heads beard board boats coats goats hats cats costs bats shoes shoe heels sheet sheets "
    "slipper clipper bags bugs legs logs logo lego pockets rockets jackets racket rocket sweeter hairs pairs "
    "chairs stairs plants hands bands band sands lands hand belt bell bolt melt felt vest best rest west test nest "
    "cap cup cop map top tip tap cape tape caps cups tops tips shorter hood food good wood hook book boot foot "
    "feet meet sleeves sleeve leaves slaves waist wrist twist shit shot shut sort port pout boat coat vets eras rams noes "
    "boyd sport sports chair chairs wears tears years bears pears fair stair stairs".split()
)
_LEXICON = tuple(sorted(GARMENTS | BODY_PARTS | PLURAL_ONLY))
_LEXICON_SET = frozenset(_LEXICON)


def _within_one_edit(a: str, b: str) -> bool:
    """True when ``a`` becomes ``b`` by one insertion, deletion, substitution or adjacent swap."""
    if a == b or abs(len(a) - len(b)) > 1:
        return a == b
    if len(a) == len(b):
        diff = [k for k in range(len(a)) if a[k] != b[k]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    k = 0
    while k < len(short) and short[k] == long_[k]:
        k += 1
    return short[k:] == long_[k + 1 :]


def _swapped(a: str, b: str) -> bool:
    """True when ``a`` is ``b`` with two adjacent letters swapped."""
    if len(a) != len(b) or a == b:
        return False
    diff = [k for k in range(len(a)) if a[k] != b[k]]
    return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


@lru_cache(maxsize=65536)
def correct_typo(word: str) -> str | None:
    """The lexicon word one edit away from an unknown ``word`` (5+ letters; 4 letters: a swap, hiar), or None."""
    if len(word) < 4 or word in _REAL_WORDS or word in COLOURS or word in MATERIALS or not word.isalpha():
        return None
    if correct_attribute(word) is not None or word in PATTERNS or word in HYPHENATED:  # "balck" is black, not back
        return None
    if len(word) == 4:
        return next((c for c in _LEXICON if _swapped(word, c)), None)
    singular = word[:-1] if word.endswith("s") else word
    for candidate in _LEXICON:
        if _within_one_edit(word, candidate) or (singular != word and _within_one_edit(singular, candidate)):
            return candidate
    return None


@lru_cache(maxsize=65536)
def correct_attribute(word: str) -> str | None:
    """The colour or pattern word a misspelt ``word`` is (balck, whtie, bleu, verticle), else None.

    Words of 5+ letters may be one edit away, 4-letter words one swap (bleu) or one dropped letter (blak) away;
    real words are never changed.
    """
    if len(word) < 4 or not word.isalpha() or word in ATTRIBUTE_TYPO_TARGETS or word in COLOURS:
        return None
    if word in REAL_WORDS_NEAR_ATTRIBUTES or word in _REAL_WORDS or word in _LEXICON_SET:
        return None
    if word in ATTRIBUTE_SPELLING:
        return ATTRIBUTE_SPELLING[word]
    for target in sorted(ATTRIBUTE_TYPO_TARGETS):
        if _swapped(word, target) or len(target) >= 5 and (len(word) >= 5 or len(target) == 5) and _within_one_edit(word, target):
            return target
    return None


@lru_cache(maxsize=65536)
def normalise_head(text: str, lemma: str) -> str:
    """The head of an object written ``text`` (lemmatised as ``lemma``): singular, variants unified."""
    word = " ".join(text.lower().split())
    if word in SPELLING:
        return SPELLING[word]
    if word in PLURAL_ONLY:
        return word
    lem = lemma.lower()
    if lem in SPELLING:
        return SPELLING[lem]
    if word.endswith("s") and lem + "s" in PLURAL_ONLY:
        return lem + "s"
    if lem in GARMENTS or lem in BODY_PARTS or lem in PERSON_NOUNS:
        return lem
    fixed = correct_typo(word) or correct_typo(lem)
    if fixed is not None:
        return fixed
    if word.endswith("-s") or (word.endswith("s") and "-" in word and lem == word):
        return word[:-1]
    return lem


@lru_cache(maxsize=65536)
def verb_lemma(word: str, lemma: str) -> str:
    """The lemma of verb ``word`` (lemmatised as ``lemma``), with the model's slips and typos of frequent verbs fixed."""
    lemma = VERB_LEMMAS.get(lemma, VERB_LEMMAS.get(word, lemma))
    form = verb_typo(word)
    return VERB_FORMS[form] if form else lemma


@lru_cache(maxsize=65536)
def verb_typo(word: str) -> str | None:
    """The frequent verb form (wearing, carrying ...) that ``word`` is, or is one typo away from, else None."""
    if word in VERB_FORMS:
        return word
    if len(word) < 6:
        return None
    return next((form for form in VERB_FORMS if _within_one_edit(word, form)), None)


def is_colour(word: str) -> bool:
    """A colour word or a shade (dark, light ...)."""
    return word in COLOURS or word in SHADES


def split_hyphenated(word: str) -> list[str]:
    """Attribute strings for one hyphenated or slashed modifier token, normalised.

    ``black-and-tan`` -> [black, tan]; ``dark-blue`` -> [dark blue]; ``short-sleeve`` -> [short-sleeved];
    ``light-colored`` -> [light]; ``button-up`` -> [button-up].
    """
    lower = word.lower()
    if lower in HYPHENATED:
        return [HYPHENATED[lower]]
    parts = [p for p in lower.replace("/", "-").replace("&", "-").split("-") if p]
    if len(parts) >= 2 and parts[-1] in ("sleeve", "sleeves", "sleeved") and parts[-2] in SLEEVE_LENGTHS:
        return [f"{SLEEVE_LENGTHS[parts[-2]]}-sleeved"]
    if parts and parts[-1] in ("colored", "coloured", "color", "colour"):
        return split_hyphenated("-".join(parts[:-1])) if len(parts) > 1 else []
    words = [p for p in parts if p not in ("and", "or", "n")]
    if words and all(is_colour(p) for p in words):
        out: list[str] = []
        k = 0
        while k < len(words):
            if words[k] in SHADES and k + 1 < len(words) and words[k + 1] in COLOURS and words[k + 1] not in SHADES:
                out.append(f"{words[k]} {words[k + 1]}")
                k += 2
            else:
                out.append(words[k])
                k += 1
        return out
    return [lower]
