"""CLIP BPE tokens of captions with the character span and word of each token in the caption.

The ids are exactly those of open_clip's ``SimpleTokenizer`` (``open_clip.get_tokenizer('ViT-B-16')``):
the caption is cleaned the same way (ftfy, HTML unescaping, whitespace, lower case), split with the
same pattern and merged with the same BPE. Work is cached per whitespace-separated chunk of the cleaned
text, and a batch of captions is assembled with numpy, so a caption costs a few dict look-ups.

Offsets index the *original* caption. For plain ASCII captions (no ``&``, no control characters
but tabs and line breaks) cleaning only collapses whitespace and lower-cases, so offsets are exact; otherwise the cleaned text is aligned to the caption
with difflib and a token's span covers the characters it came from.

A *word* is a run of letters and digits joined by internal hyphens or apostrophes ("t-shirt",
"man's", "16-year-old"), or a run of other non-space characters (punctuation); words are numbered
from 0 in caption order and every token belongs to the word in which it starts.
"""

from __future__ import annotations

import difflib
import hashlib
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

import numpy as np
import regex

TOKENIZER_NAME = "open_clip.SimpleTokenizer/lower"
_LINE_SPACE = str.maketrans("\t\n\r", "   ")  # whitespace that cleaning collapses, as spaces of the same width
WORD_PATTERN = regex.compile(r"[\p{L}\p{N}]+(?:['\-][\p{L}\p{N}]+)*|[^\s\p{L}\p{N}]+")


def tokenizer_name(tokenizer: Any) -> str:
    """``open_clip.SimpleTokenizer/<cleaning>`` for an open_clip SimpleTokenizer (``.../lower`` by default)."""
    clean = getattr(getattr(tokenizer, "clean_fn", None), "__name__", "unknown").lstrip("_").removeprefix("clean_")
    return f"{type(tokenizer).__module__.split('.')[0]}.{type(tokenizer).__name__}/{clean}"


def vocabulary_hash(tokenizer: Any) -> str:
    """SHA-256 (first 16 hex digits) of a tokenizer's id -> token table and its merges."""
    digest = hashlib.sha256()
    for token, index in sorted(tokenizer.encoder.items(), key=lambda item: item[1]):
        digest.update(f"{index}\t{token}\n".encode())
    for pair, rank in sorted(tokenizer.bpe_ranks.items(), key=lambda item: item[1]):
        digest.update(f"{rank}\t{pair[0]} {pair[1]}\n".encode())
    return digest.hexdigest()[:16]


@dataclass
class TokenBatch:
    """Tokens of a batch of captions, flat (no start/end tokens): caption i owns ``offsets[i]:offsets[i+1]``."""

    offsets: np.ndarray  # int64 [n + 1]
    ids: np.ndarray  # int32
    starts: np.ndarray  # int32, character offsets into the original caption
    ends: np.ndarray  # int32
    words: np.ndarray  # int32, word number within the caption


class ClipTokenizer:
    """open_clip's CLIP BPE tokenizer with character offsets and words, cached per chunk."""

    def __init__(self) -> None:
        from open_clip.tokenizer import SimpleTokenizer

        self.tokenizer = SimpleTokenizer()
        self.name = tokenizer_name(self.tokenizer)
        self.vocab_hash = vocabulary_hash(self.tokenizer)
        self.sot_id: int = self.tokenizer.sot_token_id
        self.eot_id: int = self.tokenizer.eot_token_id
        self.vocab_size: int = self.tokenizer.vocab_size
        self._chunk_index: dict[str, int] = {}
        # per cached chunk: its tokens as ids, spans and word numbers relative to the chunk
        self._chunk_tokens: list[tuple[list[int], list[int], list[int], list[int], int]] = []
        self._packed: tuple[np.ndarray, ...] | None = None

    # ------------------------------------------------------------------ one chunk (cache miss)
    def _add_chunk(self, chunk: str) -> int:
        word_starts = [m.start() for m in WORD_PATTERN.finditer(chunk)]
        ids: list[int] = []
        starts: list[int] = []
        ends: list[int] = []
        words: list[int] = []
        for match in self.tokenizer.pat.finditer(chunk):
            piece_start = match.start()
            char_of_byte = [i for i, ch in enumerate(match.group()) for _ in ch.encode("utf-8")]
            encoded = "".join(self.tokenizer.byte_encoder[b] for b in match.group().encode("utf-8"))
            byte = 0
            for piece in self.tokenizer.bpe(encoded).split(" "):
                ids.append(self.tokenizer.encoder[piece])
                width = len(piece) - 4 if piece.endswith("</w>") else len(piece)  # in bytes
                first, last = char_of_byte[min(byte, len(char_of_byte) - 1)], char_of_byte[min(byte + width, len(char_of_byte)) - 1]
                starts.append(piece_start + first)
                ends.append(piece_start + last + 1)
                words.append(bisect_right(word_starts, piece_start + first) - 1)
                byte += width
        used = sorted(set(words))  # number only the words in which some token starts
        words = [used.index(w) for w in words]
        self._chunk_tokens.append((ids, starts, ends, words, len(used)))
        self._chunk_index[chunk] = index = len(self._chunk_tokens) - 1
        self._packed = None
        return index

    def _pack(self) -> tuple[np.ndarray, ...]:
        """The chunk cache as flat arrays: token pointer, ids, starts, ends, words, word count per chunk."""
        if self._packed is None:
            counts = np.fromiter((len(t[0]) for t in self._chunk_tokens), np.int64, len(self._chunk_tokens))
            pointer = np.concatenate([[0], np.cumsum(counts)])
            flat = [np.fromiter((v for t in self._chunk_tokens for v in t[k]), np.int32, int(pointer[-1])) for k in range(4)]
            n_words = np.fromiter((t[4] for t in self._chunk_tokens), np.int32, len(self._chunk_tokens))
            self._packed = (pointer, *flat, n_words)
        return self._packed

    # ------------------------------------------------------------------ a batch of captions
    def encode_batch(self, captions: list[str]) -> TokenBatch:
        """Tokens, spans and words of each caption (no start/end tokens, no cut)."""
        if not captions:
            empty = np.zeros(0, np.int32)
            return TokenBatch(np.zeros(1, np.int64), empty, empty, empty, empty)
        index, lookup = self._chunk_index, self._chunk_index.get
        chunk_ids: list[int] = []
        chunk_lengths: list[int] = []
        n_chunks = np.empty(len(captions), np.int64)
        aligned: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for i, caption in enumerate(captions):
            text = caption.translate(_LINE_SPACE).lower()  # all that cleaning does to most captions
            if not (caption.isascii() and text.isprintable() and "&" not in caption):
                text = self.tokenizer.clean_fn(caption)
                aligned[i] = _alignment(caption, text)
            chunks = text.split(" ")
            found = [lookup(c) for c in chunks]
            if None in found:
                found = [index[c] if c in index else self._add_chunk(c) for c in chunks]
            chunk_ids.extend(found)
            chunk_lengths.extend(map(len, chunks))
            n_chunks[i] = len(chunks)
        pointer, ids, starts, ends, words, words_per_chunk = self._pack()
        chunk = np.asarray(chunk_ids, np.int64)
        caption_of_chunk = np.repeat(np.arange(len(captions)), n_chunks)
        # character offset and first word number of each chunk within its caption
        width = np.asarray(chunk_lengths, np.int64) + 1
        chunk_start = _segment_exclusive_cumsum(width, n_chunks)
        chunk_word = _segment_exclusive_cumsum(words_per_chunk[chunk].astype(np.int64), n_chunks)
        # expand chunks to their tokens
        per_chunk = pointer[chunk + 1] - pointer[chunk]
        token = np.repeat(pointer[chunk] - np.cumsum(per_chunk) + per_chunk, per_chunk) + np.arange(per_chunk.sum())
        owner = np.repeat(np.arange(len(chunk)), per_chunk)
        batch = TokenBatch(
            offsets=np.concatenate([[0], np.cumsum(np.bincount(caption_of_chunk[owner], minlength=len(captions)))]),
            ids=ids[token],
            starts=(starts[token] + chunk_start[owner]).astype(np.int32),
            ends=(ends[token] + chunk_start[owner]).astype(np.int32),
            words=(words[token] + chunk_word[owner]).astype(np.int32),
        )
        for i, (first, last) in aligned.items():  # map cleaned-text offsets back to the caption
            sl = slice(batch.offsets[i], batch.offsets[i + 1])
            batch.starts[sl] = first[batch.starts[sl]]
            batch.ends[sl] = last[batch.ends[sl] - 1]
        return batch


def _segment_exclusive_cumsum(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``values`` restarted at each segment (segments of ``lengths``), exclusive."""
    total = np.cumsum(values) - values
    segment_start = np.repeat(total[np.concatenate([[0], np.cumsum(lengths)[:-1]])], lengths)
    return total - segment_start


def _alignment(original: str, cleaned: str) -> tuple[np.ndarray, np.ndarray]:
    """For each character of ``cleaned``: the first and (end-exclusive) last original character it came from."""
    first = np.zeros(len(cleaned), np.int32)
    last = np.zeros(len(cleaned), np.int32)
    lowered = original.lower()
    matcher = difflib.SequenceMatcher(None, lowered if len(lowered) == len(original) else original, cleaned, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            first[j1:j2] = np.arange(i1, i2)
            last[j1:j2] = np.arange(i1, i2) + 1
        elif j2 > j1:  # replaced or inserted characters cover the whole original block
            first[j1:j2] = i1
            last[j1:j2] = max(i2, i1 + (tag == "replace"))
    return first, last
