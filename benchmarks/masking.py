"""Benchmark knowledge-guided masking (tir.knowledge.masking.mask_tokens) against a tiny train step.

Times one ``mask_tokens`` call on a batch of 64 captions at L=77 (HKGR's uniform policy and the
plain random strategy) and one optimisation step of a tiny open_clip CLIP (image 128x48, vision
width 192 x 4 layers, text width 128 x 2 layers) at batch 32 and 64 with a contrastive loss. Medians
over repeats, interleaved, so a shared machine slows both alike. Target: masking < 5% of a step.

    python benchmarks/masking.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from tir.knowledge.masking import MaskPolicy, mask_tokens

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def plan_batch(batch: int, length: int = 77, seed: int = 0) -> dict[str, torch.Tensor]:
    """Plans shaped like CUHK-PEDES': 20-70 tokens, words of 1-2 tokens, a third of words graph elements."""
    g = torch.Generator().manual_seed(seed)
    n = torch.randint(20, 70, (batch, 1), generator=g)
    position = torch.arange(length)[None]
    real = (position > 0) & (position < n)
    word = torch.where(real, (position - 1) * 2 // 3, -1)
    level = torch.where(real & (word % 3 == 1), torch.randint(1, 4, (batch, length), generator=g), 0)
    tokens = torch.where(real, torch.randint(1, 49000, (batch, length), generator=g), 0)
    tokens = torch.where(position == 0, 49406, torch.where(position == n, 49407, tokens))
    return {"token_ids": tokens, "word_ids": word, "level": level, "element": torch.where(level > 0, word // 3, -1),
            "pair_index": torch.arange(batch) * 13}


def mask_once(batch: dict[str, torch.Tensor], policy: MaskPolicy) -> None:
    mask_tokens(batch["token_ids"], batch["word_ids"], batch["level"], batch["element"], batch["pair_index"],
                epoch=3, seed=0, policy=policy, mask_token_id=49405, vocab_size=49408)


def tiny_step(batch: int):
    import open_clip

    model = open_clip.CLIP(
        embed_dim=128,
        vision_cfg={"image_size": (128, 48), "patch_size": 16, "width": 192, "layers": 4, "head_width": 64},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2},
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-5)
    images = torch.randn(batch, 3, 128, 48)
    text = plan_batch(batch)["token_ids"]

    def step() -> None:
        image_features = torch.nn.functional.normalize(model.encode_image(images), dim=-1)
        text_features = torch.nn.functional.normalize(model.encode_text(text), dim=-1)
        logits = 50 * image_features @ text_features.T
        target = torch.arange(batch)
        loss = torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return step


def median_ms(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed repetitions of each measurement")
    args = parser.parse_args()
    batch = plan_batch(64)
    runs = {
        "mask_tokens, batch 64, HKGR uniform policy": lambda: mask_once(batch, MaskPolicy.uniform()),
        "mask_tokens, batch 64, random strategy": lambda: mask_once(batch, MaskPolicy.fixed("random")),
        "tiny open_clip train step, batch 32": tiny_step(32),
        "tiny open_clip train step, batch 64": tiny_step(64),
    }
    for function in runs.values():  # warm up
        function()
    times = {name: [] for name in runs}
    for _ in range(3):  # interleave so load changes hit every row
        for name, function in runs.items():
            times[name].append(median_ms(function, max(args.repeat // 3, 1)))
    result = {name: statistics.median(values) for name, values in times.items()}
    step = result["tiny open_clip train step, batch 32"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(f"| {'run':<44} | {'ms':>8} | {'% of a batch-32 step':>20} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 22}|")
    for name, ms in result.items():
        print(f"| {name:<44} | {ms:>8.2f} | {100 * ms / step:>19.1f}% |")


if __name__ == "__main__":
    main()
