"""RDE's Confident Consensus Division (CCD): which training pairs to trust in the next epoch.

Given per-pair losses from two embeddings (BGE and TSE), each set is min-max normalised and fitted
with a two-component Gaussian mixture; a pair is *clean* for that embedding when the posterior of
the low-mean component exceeds 0.5. Pairs tied at the lowest loss (a hinge loss such as TAL is exactly
zero for every pair it fits) are a point mass that a Gaussian cannot model: fitted with the rest, the
low-mean component collapses onto them and every other clean pair falls to the noisy side. tir fits
the mixture to the other pairs and counts the tied ones clean; ``fit_floor`` restores RDE's fit.
When a mixture calls every pair clean, the ``min_noisy_fraction`` of pairs least likely clean (RDE, after
NCR: 1/100) are called noisy for that embedding, so that no epoch trusts every pair blindly.
Consensus: clean for both -> weight 1, noisy for both -> 0, disagreement -> a fair coin flip.
Everything is seeded, so every process of a distributed run that sees the same losses derives the
same weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.mixture import GaussianMixture


def minmax(losses: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] (all zeros when every loss is equal)."""
    losses = np.asarray(losses, dtype=np.float64)
    span = losses.max() - losses.min()
    return (losses - losses.min()) / span if span > 0 else np.zeros_like(losses)


@dataclass(frozen=True)
class GmmSettings:
    """GaussianMixture fit settings. RDE: these at noise > 0.4 or on RSTPReid, else (10, 1e-2, 5e-4).

    ``fit_floor``: also fit the pairs tied at the lowest loss (RDE's published fit; see the module doc).
    """

    max_iter: int = 100
    tol: float = 1e-4
    reg_covar: float = 1e-6
    fit_floor: bool = False


def clean_probability(losses: np.ndarray, seed: int = 0, gmm: GmmSettings = GmmSettings()) -> np.ndarray:
    """Posterior of the low-mean component of a 2-component GMM fitted to min-max normalised losses.

    Pairs tied at the lowest loss get 1 and stay out of the fit, unless ``gmm.fit_floor``.
    """
    values = minmax(losses)
    probability = np.ones(len(values))
    fitted = np.ones(len(values), bool) if gmm.fit_floor else values > 0
    if fitted.sum() < 2 or np.ptp(values[fitted]) == 0:
        return probability  # nothing to separate: trust every pair
    mixture = GaussianMixture(
        n_components=2, max_iter=gmm.max_iter, tol=gmm.tol, reg_covar=gmm.reg_covar, random_state=seed
    )
    column = values[fitted].reshape(-1, 1)
    mixture.fit(column)
    probability[fitted] = mixture.predict_proba(column)[:, int(np.argmin(mixture.means_.ravel()))]
    return probability


def split_clean(probability: np.ndarray, losses: np.ndarray, min_noisy_fraction: float = 0.01) -> np.ndarray:
    """Clean where ``probability`` > 0.5. If that leaves no pair noisy, the ``ceil(n * min_noisy_fraction)``
    pairs least likely clean (ties: higher loss first) are noisy; losses all equal give nothing to rank."""
    if not 0.0 <= min_noisy_fraction < 1.0:
        raise ValueError(f"min_noisy_fraction must be in [0, 1), got {min_noisy_fraction}")
    clean = np.asarray(probability) > 0.5
    if min_noisy_fraction > 0 and clean.size and clean.all() and np.ptp(losses) > 0:
        order = np.lexsort((-np.asarray(losses, float), probability))  # by probability, then by loss, descending
        clean[order[: math.ceil(len(clean) * min_noisy_fraction)]] = False
    return clean


def consensus_weights(clean_a: np.ndarray, clean_b: np.ndarray, seed: int = 0) -> np.ndarray:
    """1 where both say clean, 0 where both say noisy, a seeded coin flip where they disagree."""
    clean_a, clean_b = np.asarray(clean_a, bool), np.asarray(clean_b, bool)
    coin = np.random.default_rng(seed).integers(0, 2, size=clean_a.shape).astype(bool)
    return np.where(clean_a == clean_b, clean_a, coin).astype(np.float32)


def divide(
    losses_a: np.ndarray,
    losses_b: np.ndarray,
    seed: int = 0,
    gmm: GmmSettings = GmmSettings(),
    min_noisy_fraction: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CCD on two loss vectors: (weights, clean_a, clean_b)."""
    clean_a = split_clean(clean_probability(losses_a, seed, gmm), losses_a, min_noisy_fraction)
    clean_b = split_clean(clean_probability(losses_b, seed, gmm), losses_b, min_noisy_fraction)
    return consensus_weights(clean_a, clean_b, seed), clean_a, clean_b


def detection_scores(predicted_noisy: np.ndarray, is_noisy: np.ndarray) -> dict[str, float]:
    """Precision and recall of noisy-pair detection (1.0 by convention when nothing is to be found/flagged)."""
    predicted_noisy, is_noisy = np.asarray(predicted_noisy, bool), np.asarray(is_noisy, bool)
    true_positive = float(np.sum(predicted_noisy & is_noisy))
    flagged, actual = float(predicted_noisy.sum()), float(is_noisy.sum())
    return {
        "precision": true_positive / flagged if flagged else 1.0,
        "recall": true_positive / actual if actual else 1.0,
    }
