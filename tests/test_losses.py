"""Eq. 7-9 on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mollia_core.losses import discrepancy_weights, lambda_schedule, negative_learning_loss, robust_loss

PROBS = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], dtype=torch.float64)
NEGATIVES = torch.tensor([[False, True, True], [True, False, False]])


def test_negative_learning_loss_by_hand():
    # sample 0: -(log(1 - 0.3) + log(1 - 0.2)) = 0.356675 + 0.223144; sample 1: -log(1 - 0.1)
    loss = negative_learning_loss(PROBS, NEGATIVES)
    assert loss.shape == (2,)
    assert loss[0].item() == pytest.approx(0.579818495, abs=1e-8)
    assert loss[1].item() == pytest.approx(0.105360516, abs=1e-8)


def test_negative_learning_loss_is_zero_without_negatives_and_finite_at_certainty():
    assert negative_learning_loss(PROBS, torch.zeros_like(NEGATIVES)).abs().sum().item() == 0.0
    certain = torch.tensor([[1.0, 0.0]])
    loss = negative_learning_loss(certain, torch.tensor([[True, False]]))
    assert torch.isfinite(loss).all() and loss.item() > 10


def test_robust_loss_by_hand():
    # logits = log p, so softmax(logits) = p. y+ = (0, 2), W_d = (1, 0.5), lambda = 0.5:
    # sample 0: 1.0 * -log 0.5 + 0.5 * 0.579818 = 0.983056
    # sample 1: 0.5 * -log 0.8 + 0.5 * 0.105361 = 0.164252      mean = 0.573654
    logits = PROBS.log()
    y = torch.tensor([0, 2])
    loss = robust_loss(logits, y, NEGATIVES, torch.tensor([1.0, 0.5], dtype=torch.float64), negative_weight=0.5)
    assert loss.item() == pytest.approx(0.573654, abs=1e-6)
    # switches: no negative learning -> weighted CE only; no weights -> plain CE
    no_neg = robust_loss(logits, y, NEGATIVES, torch.tensor([1.0, 0.5], dtype=torch.float64), negative_weight=0.0)
    assert no_neg.item() == pytest.approx((-math.log(0.5) + 0.5 * -math.log(0.8)) / 2, abs=1e-9)
    plain = robust_loss(logits, y)
    assert plain.item() == pytest.approx((-math.log(0.5) - math.log(0.8)) / 2, abs=1e-9)


def test_robust_loss_log_space_matches_eq8_and_keeps_gradient_when_certain():
    logits = PROBS.log()
    y = torch.tensor([0, 2])
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    expected = (ce + 0.7 * negative_learning_loss(PROBS, NEGATIVES)).mean()
    assert robust_loss(logits, y, NEGATIVES, None, 0.7).item() == pytest.approx(expected.item(), abs=1e-9)
    # a model certain of a negative label (p = 1 - 1e-13) still gets pushed away from it
    confident = torch.tensor([[30.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    loss = robust_loss(confident, torch.tensor([1]), torch.tensor([[True, False, False]]), None, 1.0)
    loss.backward()
    assert confident.grad[0, 0].item() > 0.5  # gradient descent lowers the negative label's logit


def test_robust_loss_keeps_both_terms_when_y_plus_is_also_negative():
    # Eq. 9 literally: y+ = 1 and 1 in y- for sample 0 -> -log 0.3 (CE) + lambda * -log(1 - 0.3) (L_neg)
    logits = PROBS[:1].log()
    loss = robust_loss(logits, torch.tensor([1]), torch.tensor([[False, True, False]]), None, 0.5)
    assert loss.item() == pytest.approx(-math.log(0.3) - 0.5 * math.log(0.7), abs=1e-9)


def test_lambda_schedule_endpoints_and_midpoint():
    assert lambda_schedule(0, 11) == pytest.approx(0.4)
    assert lambda_schedule(5, 11) == pytest.approx(0.7)
    assert lambda_schedule(10, 11) == pytest.approx(1.0)
    assert lambda_schedule(3, 4, start=0.0, end=0.3) == pytest.approx(0.3)
    assert lambda_schedule(25, 11) == pytest.approx(1.0)  # past the plan: stays at the end value
    assert lambda_schedule(0, 1) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="0-based"):
        lambda_schedule(-1, 10)
    with pytest.raises(ValueError, match="at least 1"):
        lambda_schedule(0, 0)


def test_discrepancy_weights_from_previous_predictions():
    y_plus = np.array([0, 1, 2, 1])
    previous_labels = np.array([0, 2, 2, 0])
    d_anno, weights = discrepancy_weights(previous_labels, y_plus, alpha=0.5)
    np.testing.assert_array_equal(d_anno, [False, True, False, True])
    np.testing.assert_allclose(weights, [1.0, 0.5, 1.0, 0.5])
    # the previous model's probabilities work the same (argmax taken)
    previous_probs = np.array([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    d_probs, w_probs = discrepancy_weights(previous_probs, y_plus, alpha=0.25)
    np.testing.assert_array_equal(d_probs, d_anno)
    np.testing.assert_allclose(w_probs, [1.0, 0.25, 1.0, 0.25])


def test_discrepancy_weights_first_iteration_and_bad_input():
    d_anno, weights = discrepancy_weights(None, np.array([1, 0, 1]))
    assert not d_anno.any() and (weights == 1.0).all()
    with pytest.raises(ValueError, match="exactly the texts"):
        discrepancy_weights(np.array([0, 1]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="alpha"):
        discrepancy_weights(np.array([0]), np.array([0]), alpha=1.5)
