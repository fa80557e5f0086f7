"""Rank an index for sentences with the run's own test similarity, as ``tir eval`` ranks its queries.

``Searcher.open(run, index_path)`` loads the run's checkpoint and an index built from it. ``search``
encodes the sentences with the method's ``encode_text`` (the run's tokenizer and text length), scores
them with the method's ``similarity`` against the index features and orders the gallery as evaluation
does (descending score, ties in gallery order), so a caption of the split gets the ranking ``tir eval``
gives that query. Each result carries the sentence's scene graph (``tir parse-graphs``' default
parser) and, for methods that declare one, the words the model attended to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from tir.errors import UserError
from tir.pipeline import store
from tir.search.compact import CompactIndex, finite
from tir.search.index import GalleryIndex, load_index
from tir.training.methods.base import Features, Method
from tir.training.metrics import top_indices
from tir.training.rerank import reranked_similarity

MAX_SENTENCE_CHARS = 1000
MAX_TOP = 100
DEFAULT_RERANK_K = 128  # as `tir eval --rerank-k`: a re-ranking method (cfack) re-scores each sentence's top 128
COMPACT_MIN_ROWS = 20_000  # from this gallery size on, `tir serve` keeps an int8 copy for a first pass


@dataclass
class Hit:
    rank: int  # 1-based
    score: float
    image_path: str  # relative to the index's root
    pid: int | None


@dataclass
class SearchResult:
    sentence: str
    hits: list[Hit]
    graph: dict[str, list[dict[str, Any]]] | None = None  # objects / attributes / relations (tir's graph schema)
    attended: list[dict[str, Any]] = field(default_factory=list)  # words: {"word", "start", "end", "weight"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@lru_cache(maxsize=1)
def _graph_parser():
    from tir.knowledge.graphs import get_backend

    return get_backend("spacy")


@lru_cache(maxsize=1)
def _word_tokenizer():
    from tir.knowledge.clip_tokens import ClipTokenizer

    return ClipTokenizer()


def attended_words(caption: str, weights: torch.Tensor) -> list[dict[str, Any]]:
    """The caption's words with the largest weight of their tokens (``weights`` [L] over the tokenized caption,
    start token first), only words with a positive weight."""
    tokens = _word_tokenizer().encode_batch([caption])
    words: dict[int, dict[str, Any]] = {}
    for position, (word, start, end) in enumerate(zip(tokens.words, tokens.starts, tokens.ends), start=1):
        if position >= len(weights):
            break
        entry = words.setdefault(int(word), {"start": int(start), "end": int(end), "weight": 0.0})
        entry["end"] = max(entry["end"], int(end))
        entry["weight"] = max(entry["weight"], float(weights[position]))
    return [{"word": caption[w["start"]:w["end"]], **w} for _, w in sorted(words.items()) if w["weight"] > 0]


class Searcher:
    """A run's method and an index built from the same checkpoint, ready to rank sentences."""

    def __init__(self, method: Method, config: dict[str, Any], index: GalleryIndex, device: torch.device,
                 rerank_k: int = DEFAULT_RERANK_K, compact_min_rows: int | None = None) -> None:
        """``compact_min_rows``: keep an int8 copy of the index for a first pass when it has at least this
        many images (None: never), on CPU for a method declaring ``similarity_terms`` that does not re-rank;
        the top k stays exactly the float32 scan's (tir.search.compact)."""
        from tir.training.build import tokenizer_for
        from tir.training.data import make_tokenize

        self.method, self.config, self.index, self.device = method, config, index, device
        self.rerank_k = rerank_k if method.reranks else 0
        self.tokenize = make_tokenize(tokenizer_for(config), int(config["text_length"]))
        self.image_features: Features = {name: value.to(device) for name, value in index.features.items()}
        self.compact: CompactIndex | None = None
        if (compact_min_rows is not None and len(index) >= compact_min_rows and device.type == "cpu"
                and not self.rerank_k and method.similarity_terms):
            self.compact = CompactIndex.build(self.image_features, method.similarity_terms)

    @classmethod
    def open(cls, run: Path, index_path: Path, device: torch.device, rerank_k: int = DEFAULT_RERANK_K,
             compact_min_rows: int | None = None) -> "Searcher":
        """Load the run's checkpoint and the index; refuse an index built from another checkpoint."""
        from tir.training.checkpoint import checkpoint_path, load_method

        checkpoint = checkpoint_path(run)
        index = load_index(index_path)
        recorded = index.provenance.get("inputs", {}).get("checkpoint")
        if recorded is None or not store.fingerprint_matches(recorded, checkpoint):
            raise UserError(f"was built from another checkpoint than {checkpoint}; run `tir index {run}`", path=index_path)
        method, config, _ = load_method(checkpoint, device)
        return cls(method, config, index, device, rerank_k, compact_min_rows)

    @torch.no_grad()
    def encode(self, sentences: list[str]) -> Features:
        """The method's test-time text features of the sentences (float32)."""
        self.method.eval()
        text = self.method.encode_text(self.tokenize(sentences).to(self.device))
        return {name: value.float() for name, value in text.items()}

    @torch.no_grad()
    def scores(self, text: Features) -> tuple[torch.Tensor, torch.Tensor]:
        """(the method's test similarity, the scores that order the gallery) [sentences, gallery] of encoded
        sentences: the two differ for a method that re-ranks each sentence's top ``rerank_k`` (as `tir eval
        --rerank-k`)."""
        similarity = self.method.similarity(text, self.image_features)
        if self.rerank_k <= 0:
            return similarity, similarity
        ordering = reranked_similarity(similarity, self.rerank_k,
                                       lambda candidates: self.method.rerank(text, self.image_features, candidates))
        return similarity, ordering

    @torch.no_grad()
    def top(self, text: Features, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(similarity, gallery positions) of the top ``k`` per encoded sentence, in evaluation's order."""
        if self.compact is not None and finite(text) and torch.get_float32_matmul_precision() == "highest":
            return self.compact.top(self.method.similarity, text, self.image_features, k)
        similarity, ordering = self.scores(text)
        positions = top_indices(ordering, k)  # evaluation's order: descending, ties in gallery order
        return similarity.gather(1, positions).cpu(), positions.cpu()

    def rank(self, sentences: list[str], k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(similarity, gallery positions) of the top ``k`` per sentence, in evaluation's order."""
        return self.top(self.encode(sentences), k)

    def parse(self, sentences: list[str]) -> list[dict[str, list[dict[str, Any]]]]:
        """Scene graphs of the sentences with tir's default parser (spaCy), loaded on first use."""
        return [asdict(graph) for graph in _graph_parser().parse_batch(sentences)]

    @staticmethod
    def attended(sentences: list[str], text: Features) -> list[list[dict[str, Any]]]:
        """Per sentence, the words the method's test similarity attends to (its ``token_weights`` text
        feature; [] when it declares none)."""
        weights = text.get("token_weights")
        if weights is None:
            return [[] for _ in sentences]
        return [attended_words(sentence, row.cpu()) for sentence, row in zip(sentences, weights)]

    def search(self, sentences: list[str], k: int = 10, graphs: bool = True) -> list[SearchResult]:
        """Top ``k`` hits per sentence, with its scene graph (unless ``graphs`` is False) and attended words."""
        check_query(sentences, k)
        text = self.encode(sentences)
        values, positions = self.top(text, k)
        parsed = self.parse(sentences) if graphs else [None] * len(sentences)
        attended = self.attended(sentences, text)
        results = []
        for sentence, row_values, row_positions, graph, words in zip(sentences, values, positions, parsed, attended):
            hits = [Hit(rank + 1, float(score), self.index.image_paths[int(p)], self.index.pids[int(p)])
                    for rank, (score, p) in enumerate(zip(row_values, row_positions))]
            results.append(SearchResult(sentence, hits, graph, words))
        return results


def check_query(sentences: list[str], k: int) -> None:
    """Refuse empty or over-long sentences and ``k`` outside 1..MAX_TOP with a one-line UserError."""
    if not sentences or any(not s.strip() for s in sentences):
        raise UserError("give a non-empty sentence to search for")
    if any(len(s) > MAX_SENTENCE_CHARS for s in sentences):
        raise UserError(f"a sentence is longer than {MAX_SENTENCE_CHARS} characters; shorten it")
    if not 1 <= k <= MAX_TOP:
        raise UserError(f"top {k} is outside 1..{MAX_TOP}")
