"""SceneGraphParser 0.1.0 as released (one caption at a time), mapped to the graphs.parquet schema."""

from __future__ import annotations

from collections.abc import Sequence

from tir.errors import UserError
from tir.knowledge.graphs.schema import Attribute, Graph, Object, Relation
from tir.knowledge.graphs.spacy_backend import MAX_WORDS, choose_model, parse_prefix

_ATTRIBUTE_DEPS = frozenset(("amod", "compound", "nmod", "npadvmod", "advmod"))


class SngBackend:
    """``sng_parser.Parser('spacy', model=...)``; entities -> objects, modifiers -> attributes, relations as given."""

    name = "sng"

    @staticmethod
    def identity(model: str | None = None, max_words: int = MAX_WORDS, **_: object) -> dict[str, object]:
        """What determines this backend's output (no model is loaded)."""
        return {"backend": "sng", "model": choose_model(model), "max_words": max_words}

    def __init__(self, model: str | None = None, max_words: int = MAX_WORDS, **_: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            import sng_parser
        except ImportError:
            raise UserError("SceneGraphParser is not installed; run `pip install SceneGraphParser==0.1.0`") from None
        try:
            sng_version = version("SceneGraphParser")
        except PackageNotFoundError:
            sng_version = "?"
        self.model = choose_model(model)
        self.parser = sng_parser.Parser("spacy", model=self.model)
        self.max_words = max_words
        self.version = f"SceneGraphParser {sng_version}; {self.model}"

    def parse_batch(self, captions: Sequence[str]) -> list[Graph]:
        """Parse each caption on its own, as SceneGraphParser does."""
        graphs = []
        for caption in captions:
            text, truncated = parse_prefix(caption or "", self.max_words)
            graph = self.parse_one(text) if text.strip() else Graph()
            graph.truncated = truncated
            graphs.append(graph)
        return graphs

    def parse_one(self, text: str) -> Graph:
        raw, doc = self.parser.parse(text, return_doc=True)
        return convert_sng(raw, doc)


def convert_sng(raw: dict, doc) -> Graph:
    """Map SceneGraphParser's output dict (with the spaCy Doc it parsed) to a Graph with character spans."""
    objects, attributes, relations = [], [], []
    for k, entity in enumerate(raw.get("entities", [])):
        first, last = entity["span_bounds"]
        chunk = doc[first:last]
        n_head = len(entity["head"].split())
        head_span = chunk[max(len(chunk) - n_head, 0) :]
        objects.append(Object(k, head_span.text, entity["lemma_head"].lower(), head_span.start_char, head_span.end_char))
        for modifier in entity.get("modifiers", []):
            if modifier["dep"] not in _ATTRIBUTE_DEPS:
                continue
            token = next((t for t in chunk if t.text == modifier["span"].split()[0]), chunk[0])
            attributes.append(Attribute(k, modifier["lemma_span"].lower(), token.idx, token.idx + len(modifier["span"])))
    for rel in raw.get("relations", []):
        word = rel["relation"]
        token = next((t for t in doc if t.text == word.split()[0]), None)
        start = token.idx if token is not None else 0
        relations.append(Relation(rel["subject"], rel["lemma_relation"].lower(), rel["object"], start, start + len(word) if token is not None else 0))
    return Graph(objects, attributes, relations)
