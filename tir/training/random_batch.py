"""A random batch in the layout every method's ``forward`` takes: smoke tests and step benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tir.training.mlm import token_words

START, END = 49406, 49407  # CLIP's start and end of text tokens


def random_batch(
    batch_size: int,
    image_size: tuple[int, int] = (64, 32),
    text_length: int = 16,
    words: Sequence[int] | None = None,
    seed: int = 0,
    first_index: int = 0,
) -> dict[str, torch.Tensor]:
    """Random images and captions, two pairs per identity, with mask-plan columns derived from the tokens.

    ``words`` gives each caption's number of tokens between start and end (default: fill the context);
    each token counts as its own word, its graph level cycles object / attribute / relation and every
    two words share a graph element. ``first_index`` offsets the train-set positions (``index``).
    """
    generator = torch.Generator().manual_seed(seed)
    lengths = list(words) if words is not None else [text_length - 2] * batch_size
    if len(lengths) != batch_size or max(lengths) > text_length - 2:
        raise ValueError(f"need {batch_size} caption lengths of at most {text_length - 2} tokens, got {lengths}")
    text = torch.zeros(batch_size, text_length, dtype=torch.long)
    for row, n in enumerate(lengths):
        text[row, 0], text[row, n + 1] = START, END
        text[row, 1 : n + 1] = torch.randint(300, 5000, (n,), generator=generator)
    word_ids = token_words(text, (START, END))
    index = torch.arange(first_index, first_index + batch_size)
    return {
        "images": torch.randn(batch_size, 3, *image_size, generator=generator),
        "text": text,
        "pids": index // 2,
        "index": index,
        "pair_index": index,
        "word_ids": word_ids,
        "level": torch.where(word_ids >= 0, 1 + word_ids % 3, 0),
        "element": torch.where(word_ids >= 0, word_ids // 2, -1),
    }
