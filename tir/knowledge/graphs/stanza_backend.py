"""Optional backend: a stanza (UD) parse from local models, converted to the rules' tree.

stanza is the ``stanza`` extra and downloads nothing here: models come from ``--stanza-dir`` or
``$STANZA_RESOURCES_DIR``. Universal Dependencies labels are mapped onto the spaCy-style labels the
rules read (``obl``/``nmod`` + ``case`` become ``prep`` + ``pobj``; copulas head their clause).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tir.errors import UserError
from tir.knowledge.graphs.rules import build_graph
from tir.knowledge.graphs.schema import Graph
from tir.knowledge.graphs.spacy_backend import MAX_WORDS, RULES_VERSION, parse_prefix
from tir.knowledge.graphs.tree import Tok, link_children

_LABELS = {
    "root": "ROOT", "obj": "dobj", "iobj": "dative", "nsubj:pass": "nsubjpass", "aux:pass": "auxpass",
    "acl:relcl": "relcl", "nmod:poss": "poss", "compound:prt": "prt", "obl:npmod": "npadvmod",
    "obl:tmod": "npadvmod", "nmod:npmod": "npadvmod", "nmod:tmod": "npadvmod", "det:predet": "predet",
}


def resources_dir(stanza_dir: str | None) -> Path:
    """The stanza_resources folder to use; UserError when there is none with English models."""
    chosen = stanza_dir or os.environ.get("STANZA_RESOURCES_DIR")
    if not chosen:
        raise UserError("stanza needs local models; pass --stanza-dir DIR (a stanza_resources folder) or set STANZA_RESOURCES_DIR")
    path = Path(chosen)
    if not (path / "en").is_dir():
        raise UserError("no English stanza models (en/) here; copy a stanza_resources folder with en models there", path=path)
    return path


def words_to_toks(document) -> list[Tok]:
    """A stanza Document (UD parse) as one list of spaCy-style tokens over all its sentences."""
    toks: list[Tok] = []
    for sentence in document.sentences:
        base = len(toks)
        for word in sentence.words:
            start = word.start_char if word.start_char is not None else word.parent.start_char
            end = word.end_char if word.end_char is not None else word.parent.end_char
            head = base + word.head - 1 if word.head else base + word.id - 1
            toks.append(Tok(base + word.id - 1, word.text, word.lemma or word.text, word.upos or "X", word.xpos or "",
                            word.deprel or "dep", head, start or 0, end or 0))
    link_children(toks)
    for tok in toks:  # a copula heads its clause: "hair is long" -> is(nsubj hair, acomp long)
        cop = next((toks[c] for c in tok.children if toks[c].dep == "cop"), None)
        if cop is None:
            continue
        cop.head, cop.dep = (cop.i, "ROOT") if tok.head == tok.i else (tok.head, tok.dep)
        for c in tok.children:
            if toks[c].dep in ("nsubj", "nsubj:pass", "aux", "punct", "cc", "advmod", "mark"):
                toks[c].head = cop.i
        has_case = any(toks[c].dep == "case" for c in tok.children)
        tok.head, tok.dep = cop.i, "obl" if has_case else ("acomp" if tok.pos == "ADJ" else "attr")
    link_children(toks)
    for tok in toks:  # "in a shirt": in(prep) -> shirt(pobj)
        base_label = tok.dep.split(":")[0]
        if base_label in ("obl", "nmod") and tok.dep != "nmod:poss":
            case = next((toks[c] for c in tok.children if toks[c].dep == "case"), None)
            if case is not None:
                case.head, case.dep = tok.head, "prep"
                tok.head, tok.dep = case.i, "pobj"
                continue
            tok.dep = "npadvmod" if base_label == "obl" else "nmod"
    for tok in toks:
        tok.dep = _LABELS.get(tok.dep, tok.dep.split(":")[0])
    return link_children(toks)


class StanzaBackend:
    """stanza tokenize/pos/lemma/depparse from local models + the same pedestrian rules as spacy."""

    name = "stanza"

    @staticmethod
    def identity(stanza_dir: str | None = None, max_words: int = MAX_WORDS, **_: object) -> dict[str, object]:
        """What determines this backend's output (checks the model folder, loads nothing)."""
        return {"backend": "stanza", "rules": RULES_VERSION, "stanza_dir": str(resources_dir(stanza_dir).resolve()),
                "max_words": max_words}

    def __init__(self, stanza_dir: str | None = None, max_words: int = MAX_WORDS, **_: object) -> None:
        folder = resources_dir(stanza_dir)
        try:
            import stanza
        except ImportError:
            raise UserError("stanza is not installed; run `pip install 'tir[stanza]'` (or choose --backend spacy)") from None
        try:
            self.nlp = stanza.Pipeline("en", dir=str(folder), processors="tokenize,pos,lemma,depparse",
                                       download_method=None, logging_level="WARN")
        except Exception as error:  # stanza raises several types for missing or broken model files
            raise UserError(f"cannot load English stanza models ({error}); check the folder's en/ models", path=folder) from None
        self.max_words = max_words
        self.version = f"rules {RULES_VERSION}; stanza {stanza.__version__}"

    def parse_batch(self, captions: Sequence[str]) -> list[Graph]:
        """One graph per caption, in order."""
        graphs = []
        for caption in captions:
            text, truncated = parse_prefix(caption or "", self.max_words)
            graph = build_graph(words_to_toks(self.nlp(text))) if text.strip() else Graph()
            graph.truncated = truncated
            graphs.append(graph)
        return graphs
