from __future__ import annotations

import math

import pytest
import torch

from obliviate.metrics.lm_quality import accuracy_counts
from obliviate.metrics.memorization import compare_continuations
from obliviate.metrics.selection import selection_score


def test_compare_continuations_hand_built():
    # rows of length T=8, prompt 2, k=3: windows are positions 2..4
    clean = torch.tensor([[1, 1, 5, 6, 7, 0, 0, 0],
                          [1, 1, 5, 6, 7, 0, 0, 0],
                          [1, 1, 5, 6, 7, 0, 0, 0],
                          [1, 1, 5, 6, 7, 0, 0, 0]])
    art = clean.clone()
    art[0, 3] = 9  # differs inside the window -> eligible
    art[1, 4] = 9  # eligible
    art[2, 6] = 9  # differs only outside the window -> discarded
    art[3, 3] = 9
    gen = torch.tensor([[5, 9, 7],   # reproduces the artifact -> memorized
                        [5, 6, 7],   # reproduces the clean continuation -> correct
                        [5, 6, 7],
                        [5, 9, 8]])  # neither
    eligible, mem, cor = compare_continuations(gen, art, clean, torch.tensor([2, 2, 2, 2]), k=3)
    assert eligible.tolist() == [True, True, False, True]
    assert (mem & eligible).tolist() == [True, False, False, False]
    assert cor.tolist() == [False, True, True, False]


def test_compare_continuations_window_past_the_end():
    clean = torch.tensor([[1, 2, 3, 4]])
    art = torch.tensor([[1, 2, 9, 9]])
    gen = torch.tensor([[9, 9, 5, 5]])  # positions 2,3 are in range; the rest is ignored
    eligible, mem, _ = compare_continuations(gen, art, clean, torch.tensor([2]), k=4)
    assert eligible.item() and mem.item()


def test_accuracy_counts_including_and_excluding_pad():
    pad = 13
    ids = torch.tensor([[1, 2, 3, pad]])  # targets: 2, 3, pad
    logits = torch.full((1, 4, 14), -10.0)
    logits[0, 0, 2] = 10  # right
    logits[0, 1, 4] = 10  # wrong (target 3)
    logits[0, 2, pad] = 10  # right (PAD target)
    assert accuracy_counts(logits, ids, pad) == (2, 3, 1, 2)


def test_selection_score_matches_the_paper_formula():
    # mem 40 -> 4 (-90%), acc 97 -> 96.03 (-1%): score = -0.9 + 0.01
    assert math.isclose(selection_score(40, 4, acc_before=97, acc_after=96.03), -0.89, abs_tol=1e-9)
    # language: ppl 20 -> 22 (+10%), mem 50 -> 10 (-80%): -0.8 + 0.1
    assert math.isclose(selection_score(50, 10, ppl_before=20, ppl_after=22), -0.7)
    assert selection_score(0, 0, acc_before=90, acc_after=90) == 0
    with pytest.raises(ValueError):
        selection_score(1, 0)
