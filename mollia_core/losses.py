"""The noise-robust active-learning loss of the paper (Eq. 7-9).

- Eq. 7, annotation discrepancy: ``d_anno = [argmax of the previous iteration's AL model != y+]``,
  weight ``W_d = 1`` where they agree, ``alpha`` (0.5) where they do not: :func:`discrepancy_weights`.
- Eq. 8, negative learning: ``L_neg = - sum_{k in y-} log(1 - p(k|x))``: :func:`negative_learning_loss`.
- Eq. 9, the training loss: ``mean(W_d * CE(y+) + lambda * L_neg)``: :func:`robust_loss`, with lambda
  growing linearly over the iterations (0.4 -> 1.0): :func:`lambda_schedule`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["discrepancy_weights", "lambda_schedule", "negative_learning_loss", "robust_loss"]

# Smallest value 1 - p(k|x) may take in the probability-space form of Eq. 8 (keeps log finite).
_PROB_EPS = 1e-7


def negative_learning_loss(probs: Tensor, negative_mask: Tensor, eps: float = _PROB_EPS) -> Tensor:
    """Eq. 8 per sample: ``-sum_{k in y-} log(1 - p(k|x))``.

    ``probs`` is (n, K) class probabilities, ``negative_mask`` (n, K) bool/0-1 with True for the
    negative labels y-. Returns a (n,) tensor; a sample without negative labels contributes 0.
    ``1 - p`` is clamped at ``eps`` so a probability of exactly 1 gives a large finite loss.
    """
    one_minus_p = (1.0 - probs).clamp_min(eps)
    return -(negative_mask.to(probs.dtype) * torch.log(one_minus_p)).sum(dim=1)


def _log_one_minus_softmax(logits: Tensor) -> Tensor:
    """``log(1 - softmax(logits)_k)`` for every k, computed in log space.

    ``1 - p_k = sum_{j != k} exp(l_j) / sum_j exp(l_j)``: unlike clamping ``1 - p``, this keeps a
    gradient where the model is (wrongly) certain of a negative label — exactly where Eq. 8 matters.
    """
    k = logits.shape[1]
    others = logits.unsqueeze(1).expand(-1, k, -1).clone()  # (n, k, K): row k holds all logits ...
    others[:, torch.arange(k), torch.arange(k)] = float("-inf")  # ... except l_k
    return torch.logsumexp(others, dim=2) - torch.logsumexp(logits, dim=1, keepdim=True)


def robust_loss(
    logits: Tensor,
    y: Tensor,
    negative_mask: Tensor | None = None,
    sample_weight: Tensor | None = None,
    negative_weight: float = 0.0,
) -> Tensor:
    """Eq. 9: ``mean_i( W_d,i * CE(y+_i) + lambda * L_neg,i )`` as a scalar tensor.

    ``logits`` (n, K); ``y`` (n,) int labels y+; ``negative_mask`` (n, K) negative labels y-
    (None: no negative learning); ``sample_weight`` (n,) W_d from Eq. 7 (None: all 1);
    ``negative_weight`` lambda (0 turns negative learning off). Literal Eq. 9: should y+ also be in
    y- (every LLM near 0 on MoLAM's label), both terms apply and p(y+) settles near
    ``W_d / (W_d + lambda)``, a low confidence that fits such a contradicting label.
    """
    ce = F.cross_entropy(logits, y, reduction="none")
    if sample_weight is not None:
        ce = ce * sample_weight.to(ce.dtype)
    if negative_mask is None or negative_weight == 0.0:
        return ce.mean()
    l_neg = -(negative_mask.to(logits.dtype) * _log_one_minus_softmax(logits)).sum(dim=1)
    return (ce + negative_weight * l_neg).mean()


def lambda_schedule(iteration: int, planned_iterations: int, start: float = 0.4, end: float = 1.0) -> float:
    """The negative-learning weight lambda of Eq. 9 at a 0-based AL ``iteration``.

    Linear from ``start`` at the first iteration (0) to ``end`` at the last planned one
    (``planned_iterations - 1``); iterations past the plan (a user who keeps going) stay at ``end``.
    """
    if planned_iterations < 1:
        raise ValueError(f"planned_iterations must be at least 1, got {planned_iterations}")
    if iteration < 0:
        raise ValueError(f"iteration is 0-based and cannot be negative, got {iteration}")
    if iteration >= planned_iterations:
        return float(end)
    if planned_iterations == 1:
        return float(start)
    return float(start + (end - start) * iteration / (planned_iterations - 1))


def discrepancy_weights(
    previous_prediction: np.ndarray | None, y_plus: np.ndarray, alpha: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 7: annotation discrepancy ``d_anno`` and the sample weights ``W_d``.

    ``previous_prediction`` is the previous iteration's AL model on the same texts: (n,) predicted
    labels or (n, K) probabilities (argmax taken); None when there is no previous model yet (the
    first iteration), which flags nothing. ``y_plus`` (n,) are MoLAM's labels.
    Returns ``(d_anno, W_d)``: a bool array, True where the two disagree, and float weights,
    1 where they agree and ``alpha`` where they do not.
    """
    y_plus = np.asarray(y_plus)
    if y_plus.ndim != 1:
        raise ValueError(f"y_plus must be a 1-D array of label indices, got shape {y_plus.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha is a down-weighting factor in [0, 1], got {alpha}")
    if previous_prediction is None:
        d_anno = np.zeros(len(y_plus), dtype=bool)
    else:
        previous = np.asarray(previous_prediction)
        if previous.ndim == 2:
            previous = previous.argmax(axis=1)
        if previous.shape != y_plus.shape:
            raise ValueError(
                f"previous_prediction covers {previous.shape[0]} texts but y_plus {y_plus.shape[0]}: "
                "pass the previous model's prediction for exactly the texts being labeled"
            )
        d_anno = previous != y_plus
    weights = np.where(d_anno, float(alpha), 1.0)
    return d_anno, weights
