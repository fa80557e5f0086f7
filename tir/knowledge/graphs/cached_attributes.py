"""spaCy's attribute_ruler and lemmatizer, run once per distinct (word, tag, dependency) and then copied.

Both components are pure functions of a token's word, fine tag and dependency label when the ruler's patterns
read nothing else and span one token; in en_core_web_sm they took a quarter of the parse time, mostly in the
ruler's Matcher and in per-token Python. :func:`install` puts one component in their place that runs them on a
Doc of just the (word, tag, dep) triples it has not seen yet, caches their output, and writes the cached tag,
POS, morphology, lemma and label into the Doc in one array copy; a Doc where a multi-token pattern matches goes
through the ruler and lemmatizer themselves. The Docs are identical either way.
"""

from __future__ import annotations

from typing import Any

COMPONENT = "tir_cached_attributes"
RULER, LEMMATIZER = "attribute_ruler", "lemmatizer"
MAX_ENTRIES = 1_000_000  # distinct (word, tag, dep) triples kept; past that, new ones are computed every time
# token attributes a ruler pattern may read: the word's own lexical attributes, the tag and the label
_READABLE = {"ORTH", "TEXT", "LOWER", "LENGTH", "SHAPE", "PREFIX", "SUFFIX", "TAG", "DEP"} | {
    "IS_ALPHA", "IS_ASCII", "IS_DIGIT", "IS_LOWER", "IS_UPPER", "IS_TITLE", "IS_PUNCT", "IS_SPACE", "IS_STOP",
    "IS_BRACKET", "IS_QUOTE", "IS_LEFT_PUNCT", "IS_RIGHT_PUNCT", "IS_CURRENCY", "LIKE_NUM", "LIKE_URL", "LIKE_EMAIL",
}
_WRITABLE = {"POS", "MORPH", "LEMMA", "TAG", "DEP"}  # what the ruler may set (never lexeme attributes such as NORM)


class CachedAttributes:
    """Runs ``ruler`` then ``lemmatizer`` on a Doc only when needed; otherwise copies their earlier output."""

    def __init__(self, ruler: Any, lemmatizer: Any) -> None:
        from spacy.attrs import DEP, LEMMA, MORPH, ORTH, POS, TAG
        from spacy.matcher import Matcher

        self.ruler, self.lemmatizer = ruler, lemmatizer
        self.key_attrs, self.value_attrs = [ORTH, TAG, DEP], [TAG, POS, MORPH, LEMMA, DEP]
        self.multi_token, self.multi_token_start = Matcher(ruler.vocab), Matcher(ruler.vocab)
        for index, rule in enumerate(ruler.patterns):
            longer = [pattern for pattern in rule["patterns"] if len(pattern) > 1]
            if longer:
                self.multi_token.add(str(index), longer)
                self.multi_token_start.add(str(index), [pattern[:1] for pattern in longer])
        self.cache: dict[tuple[int, int, int], tuple[int, ...]] = {}
        self.starts: set[tuple[int, int, int]] = set()  # keys whose token may begin a multi-token match

    def __call__(self, doc):
        return self._annotate([doc])[0]

    def pipe(self, docs, batch_size: int = 128):
        """The Docs, annotated ``batch_size`` at a time: the cache is read once per distinct key of a batch."""
        from spacy.util import minibatch

        for batch in minibatch(docs, size=batch_size):
            yield from self._annotate(batch)

    def _annotate(self, docs: list) -> list:
        """``docs`` with the cached attributes written in (the real components run on a Doc that needs them)."""
        import numpy

        arrays = [numpy.ascontiguousarray(doc.to_array(self.key_attrs), dtype=numpy.uint64).reshape(-1, 3) for doc in docs]
        rows = numpy.concatenate(arrays)
        if not len(rows):
            return docs
        # the distinct (word, tag, dep) rows of the batch, each row viewed as one 24-byte item
        distinct, inverse = numpy.unique(rows.view(numpy.dtype((numpy.void, 24))).ravel(), return_inverse=True)
        keys = [tuple(key) for key in distinct.view(numpy.uint64).reshape(-1, 3).tolist()]
        missing = [key for key in keys if key not in self.cache]
        # inside nlp.memory_zone() new strings (lemmas) are freed at its end: nothing is learned there
        if missing and len(self.cache) < MAX_ENTRIES and not docs[0].vocab.in_memory_zone:
            self._learn(missing)
        values = [self.cache.get(key) for key in keys]
        known = numpy.array([value is not None for value in values])
        may_start = numpy.array([key in self.starts for key in keys])
        table = numpy.array([value or (0,) * len(self.value_attrs) for value in values], dtype=numpy.uint64)
        out, offset = [], 0
        for doc, array in zip(docs, arrays):
            index = inverse[offset : offset + len(array)]
            offset += len(array)
            if not known[index].all() or may_start[index].any() and self.multi_token(doc):
                out.append(self.lemmatizer(self.ruler(doc)))
            else:
                if len(index):
                    doc.from_array(self.value_attrs, table[index])
                out.append(doc)
        return out

    def _learn(self, keys: list[tuple[int, int, int]]) -> None:
        """Cache the output for each (word, tag, dep) of ``keys``, computed on a Doc of just those words (tokens
        that a multi-token pattern matches there are left out: their output depends on their neighbours)."""
        import numpy
        from spacy.tokens import Doc

        vocab = self.ruler.vocab
        probe = Doc(vocab, words=[vocab.strings[orth] for orth, _, _ in keys])
        probe.from_array(self.key_attrs[1:], numpy.array([key[1:] for key in keys], dtype=numpy.uint64))
        self.lemmatizer(self.ruler(probe))
        matched = {i for _, start, end in self.multi_token(probe) for i in range(start, end)}
        for i, (key, value) in enumerate(zip(keys, probe.to_array(self.value_attrs).tolist())):
            if i not in matched:
                self.cache[key] = tuple(value)
        self.starts.update(keys[start] for _, start, _ in self.multi_token_start(probe))


def cacheable(nlp) -> bool:
    """True when the ruler and lemmatizer run last, after the tagger and parser, and the ruler's patterns read
    and write only what :class:`CachedAttributes` keys and copies."""
    from spacy.symbols import NAMES

    names = nlp.pipe_names
    if names[-2:] != [RULER, LEMMATIZER] or not {"tagger", "parser"} <= set(names):
        return False
    if getattr(nlp.get_pipe(LEMMATIZER), "mode", None) not in ("rule", "lookup"):
        return False
    for rule in nlp.get_pipe(RULER).patterns:
        read = {_name(key, NAMES) for pattern in rule["patterns"] for token in pattern for key in token}
        if not read <= _READABLE or not {_name(key, NAMES) for key in rule["attrs"]} <= _WRITABLE:
            return False
    return True


def _name(key: int | str, names: list[str]) -> str:
    """A pattern or attribute key (a name or a spaCy symbol id) as an upper-case name."""
    return str(names[key] if isinstance(key, int) and 0 <= key < len(names) else key).upper()


def install(nlp) -> bool:
    """Replace the ruler and lemmatizer of ``nlp`` (disabled, kept) by one :class:`CachedAttributes`
    component when :func:`cacheable`; returns whether it did."""
    from spacy.language import Language

    if not cacheable(nlp):
        return False
    if COMPONENT not in Language.factories:
        Language.factory(COMPONENT, func=lambda nlp, name: CachedAttributes(nlp.get_pipe(RULER), nlp.get_pipe(LEMMATIZER)))
    nlp.add_pipe(COMPONENT, after=LEMMATIZER)
    nlp.disable_pipe(RULER)
    nlp.disable_pipe(LEMMATIZER)
    return True
