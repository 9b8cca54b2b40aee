from __future__ import annotations

import math

import pytest
import torch

from obliviate.losses.gradient import balanced_subnet_loss, grad_ascent_loss, grad_diff_loss
from obliviate.losses.nll import mean_nll, sequence_nll, shift_labels
from obliviate.methods.localize.supermask import straight_through_mask, topk_mask


def test_sequence_nll_hand_derived():
    # vocab 2, uniform logits -> every token costs log 2; row 2's last target is not scored (label -100)
    labels = torch.tensor([[0, 0, 0], [0, 0, -100]])
    logits = torch.zeros(2, 3, 2)
    assert torch.allclose(sequence_nll(logits, labels), torch.tensor([math.log(2), math.log(2)]))
    # make the model certain of token 0 at position 0 of row 0: that target costs ~0
    logits[0, 0] = torch.tensor([50.0, -50.0])
    assert torch.allclose(sequence_nll(logits, labels), torch.tensor([math.log(2) / 2, math.log(2)]), atol=1e-6)
    # the batch mean weights tokens, not sequences: (0 + log2 + log2) / 3 scored tokens
    assert math.isclose(mean_nll(logits, labels).item(), 2 * math.log(2) / 3, rel_tol=1e-5)
    targets, mask = shift_labels(labels)
    assert mask.tolist() == [[True, True], [True, False]] and targets.min() >= 0


def test_gradient_losses():
    f, r = torch.tensor(2.0), torch.tensor(0.5)
    assert grad_ascent_loss(f).item() == -2.0
    assert grad_diff_loss(f, r).item() == -1.5
    assert grad_diff_loss(f, r, gamma=0.5, alpha=2.0).item() == 0.0
    # BalancedSubnet, w = 0.7: -(0.3) * mean([1, 3]) + 0.7 * mean([0.5]) = -0.6 + 0.35
    assert math.isclose(balanced_subnet_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.5]), 0.7).item(), -0.25,
                        rel_tol=1e-6)


def test_topk_mask_prunes_the_smallest_magnitudes():
    s = torch.tensor([[0.5, -0.1], [0.3, -0.9]])
    assert topk_mask(s, 0.5).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert topk_mask(s, 0.0).tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert topk_mask(s, 0.25).tolist() == [[1.0, 0.0], [1.0, 1.0]]


def test_straight_through_gradient_is_identity_times_sign():
    s = torch.tensor([0.5, -0.1, 0.3, -0.9], requires_grad=True)
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out = (w * straight_through_mask(s, 0.5)).sum()  # d out / d mask = w
    out.backward()
    assert torch.allclose(s.grad, w * torch.sign(s.detach()))


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5])
def test_mask_fraction(ratio):
    s = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    assert math.isclose(1 - topk_mask(s, ratio).mean().item(), ratio, abs_tol=1 / s.numel())
