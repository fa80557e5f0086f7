"""A parser-neutral dependency tree: the rules read this, spaCy and stanza parses are converted to it.

Labels follow spaCy's English scheme (ClearNLP: nsubj, dobj, prep, pobj, amod, compound, conj, acl, relcl ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Tok:
    """One token: its text, tags, syntactic head and character span in the caption."""

    i: int
    text: str
    lemma: str
    pos: str  # universal POS (NOUN, VERB, ADJ, ...)
    tag: str  # fine-grained tag (NN, NNS, VBG, ...)
    dep: str
    head: int  # index of the head token; the root points to itself
    start: int
    end: int
    children: list[int] = field(default_factory=list)
    lower: str = field(init=False, default="")  # the text in lower case (the rules read it many times)

    def __post_init__(self) -> None:
        self.lower = self.text.lower()


def children(toks: list[Tok], tok: Tok, *deps: str) -> list[Tok]:
    """The children of ``tok`` (those with one of ``deps`` when given), in token order."""
    kids = tok.children
    if not kids:
        return []
    if not deps:
        return [toks[c] for c in kids]
    return [toks[c] for c in kids if toks[c].dep in deps]


def link_children(toks: list[Tok]) -> list[Tok]:
    """Fill every token's ``children`` (in token order) from the ``head`` indices."""
    for tok in toks:
        tok.children = []
    for tok in toks:
        if tok.head != tok.i:
            toks[tok.head].children.append(tok.i)
    return toks


def from_spacy(doc, text: str | None = None) -> list[Tok]:
    """Tokens of a spaCy Doc (whitespace tokens dropped from nobody's view: they keep their index).

    ``text``: the caption as written when the Doc was parsed from a same-length variant (lower-cased capitals);
    token texts are taken from it.
    """
    from spacy.attrs import DEP, HEAD, IDX, LEMMA, LENGTH, POS, TAG

    if not len(doc):
        return []
    source = doc.text if text is None else text
    strings = doc.vocab.strings
    offsets = doc.to_array(HEAD).astype("int64").tolist()  # head - i; read as arrays: no spaCy Token objects
    rows = doc.to_array([LEMMA, POS, TAG, DEP, IDX, LENGTH]).tolist()
    toks = [
        Tok(i, source[start : start + length], strings[lemma], strings[pos], strings[tag], strings[dep], i + offsets[i],
            start, start + length)
        for i, (lemma, pos, tag, dep, start, length) in enumerate(rows)
    ]
    return link_children(toks)
