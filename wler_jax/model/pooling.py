"""Masked global pooling of segment scores into recording scores (docs/design.md §2, §6).

All functions share one signature, `(segment_logits [B, S, C], mask [B, S], *, attention_logits,
alpha) -> clip_logits [B, C]`, so a config swaps them by name. Invalid (padded) segments never
influence the result. Max pooling works on logits directly (it commutes with the sigmoid, so it
is exact and numerically stable); the others pool probabilities, as in their papers, and return
the logit of the pooled probability.

References: linear/exp-softmax: Wang, Li & Metze, "A comparison of five multiple instance learning
pooling functions for sound event detection with weak labeling" (ICASSP 2019); attention: Kong et
al., "Audio Set classification with attention model" (2018); auto-pool: McFee, Salamon & Bello,
"Adaptive pooling operators for weakly labeled sound event detection" (TASLP 2018).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

_EPS = 1e-7


def _logit(p: jax.Array) -> jax.Array:
    p = jnp.clip(p, _EPS, 1.0 - _EPS)
    return jnp.log(p) - jnp.log1p(-p)


def _masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Softmax over the segment axis (1) of [B, S, C] scores restricted to valid segments."""
    scores = jnp.where(mask[..., None], scores, jnp.finfo(scores.dtype).min)
    return jax.nn.softmax(scores, axis=1) * mask[..., None]


def max_pool(segment_logits, mask, *, attention_logits=None, alpha=None):
    """The paper's global max pooling: the best segment decides (MIL)."""
    neg = jnp.finfo(segment_logits.dtype).min
    return jnp.max(jnp.where(mask[..., None], segment_logits, neg), axis=1)


def mean_pool(segment_logits, mask, *, attention_logits=None, alpha=None):
    """Average of the valid segments' probabilities."""
    p = jax.nn.sigmoid(segment_logits) * mask[..., None]
    return _logit(p.sum(1) / jnp.maximum(mask.sum(1), 1)[:, None])


def linear_softmax_pool(segment_logits, mask, *, attention_logits=None, alpha=None):
    """sum(p^2) / sum(p): each segment weighted by its own probability."""
    p = jax.nn.sigmoid(segment_logits) * mask[..., None]
    return _logit(jnp.square(p).sum(1) / jnp.maximum(p.sum(1), _EPS))


def exp_softmax_pool(segment_logits, mask, *, attention_logits=None, alpha=None):
    """sum(p e^p) / sum(e^p) over valid segments."""
    p = jax.nn.sigmoid(segment_logits)
    return _logit((p * _masked_softmax(p, mask)).sum(1))


def attention_pool(segment_logits, mask, *, attention_logits=None, alpha=None):
    """Probabilities weighted by a learned per-class attention over segments."""
    if attention_logits is None:
        raise ValueError("attention pooling needs attention_logits [B, S, C]")
    p = jax.nn.sigmoid(segment_logits)
    return _logit((p * _masked_softmax(attention_logits, mask)).sum(1))


def auto_pool(segment_logits, mask, *, attention_logits=None, alpha=None):
    """Auto-pool: softmax(alpha * p)-weighted mean; alpha [C] learned (0 = mean, inf = max)."""
    if alpha is None:
        raise ValueError("auto-pool needs alpha [C]")
    p = jax.nn.sigmoid(segment_logits)
    return _logit((p * _masked_softmax(alpha * p, mask)).sum(1))


POOLINGS: dict[str, Callable] = {
    "max": max_pool,
    "mean": mean_pool,
    "linear_softmax": linear_softmax_pool,
    "exp_softmax": exp_softmax_pool,
    "attention": attention_pool,
    "auto_pool": auto_pool,
}


def get(name: str) -> Callable:
    """The pooling function called `name` (one of POOLINGS)."""
    try:
        return POOLINGS[name]
    except KeyError:
        raise ValueError(f"unknown pooling {name!r}; choose one of {sorted(POOLINGS)}") from None
