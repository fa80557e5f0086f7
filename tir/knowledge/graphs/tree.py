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

    @property
    def lower(self) -> str:
        return self.text.lower()


def link_children(toks: list[Tok]) -> list[Tok]:
    """Fill every token's ``children`` (in token order) from the ``head`` indices."""
    for tok in toks:
        tok.children.clear()
    for tok in toks:
        if tok.head != tok.i:
            toks[tok.head].children.append(tok.i)
    return toks


def from_spacy(doc) -> list[Tok]:
    """Tokens of a spaCy Doc (whitespace tokens dropped from nobody's view: they keep their index)."""
    toks = [
        Tok(t.i, t.text, t.lemma_, t.pos_, t.tag_, t.dep_, t.head.i, t.idx, t.idx + len(t.text))
        for t in doc
    ]
    return link_children(toks)
