"""Logits only where a target is scored (``LMBatch.scored_logits``): the per-row window rule, finding the output head
through wrappers, and every LM loss giving the same value and gradients as on the full logits."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from obliviate.data.alternates import with_answers
from obliviate.families import scored
from obliviate.families.lm import ForgetRetainBatch, LMUnlearnData, TokenData, batch_of
from obliviate.families.scored import output_head, scored_windows
from obliviate.losses.nll import IGNORE_INDEX, mean_nll, sequence_nll
from obliviate.methods import build_method
from tests.conftest import build_tiny_gpt2

V, PAD = 50, 0


def _labels(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor([[IGNORE_INDEX if x is None else x for x in r] for r in rows])


@pytest.mark.parametrize("rows, index, window", [
    # row 0: first scored column 3 -> window from 2; row 1: from 1, last scored column 3 -> span 3; K = 3
    ([[None, None, None, 7, 8], [None, None, 5, 6, None]], [[2, 3, 4], [1, 2, 3]],
     [[None, 7, 8], [None, 5, 6]]),
    ([[None, 3, 4], [None, None, 2]], [[0, 1, 2], [1, 2, 2]], [[None, 3, 4], [None, 2, None]]),  # past the end: -100
    ([[1, 2, 3]], [[0, 1, 2]], [[1, 2, 3]]),  # column 0 scored (pre-training rows; PDU's unshifted mask reads row 0)
    ([[None, None, None, None]], [[0]], [[None]]),  # nothing scored: one column, no target
    ([[None, None, None, None, None, 9], [None, 4, None, None, None, None]], [[4, 5], [0, 1]], [[None, 9], [None, 4]]),
])
def test_scored_windows_hand_values(rows, index, window):
    got_index, got_window = scored_windows(_labels(rows))
    assert got_index.tolist() == index
    assert torch.equal(got_window, _labels(window))


class NoKwargs(nn.Module):
    """A user's wrapper that cannot pass keywords on: the hook on the head still works through it."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.model = inner

    def forward(self, input_ids, attention_mask=None):
        return self.model(input_ids=input_ids, attention_mask=attention_mask)


class OwnHead(nn.Module):
    """A causal LM with no ``get_output_embeddings``: all logits are computed, then the window is gathered."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.head = nn.Embedding(V, 8), nn.Linear(8, V)

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.head(self.emb(input_ids).cumsum(1)))


def test_output_head_is_found_through_wrappers():
    from obliviate.lora import LoraConfig, attach_lora
    from obliviate.methods.lm.reference import AdapterDisabled

    gpt2 = build_tiny_gpt2(V, 1)
    assert output_head(gpt2) is gpt2.lm_head and output_head(NoKwargs(gpt2)) is gpt2.lm_head
    assert output_head(OwnHead()) is None and output_head(nn.Linear(2, 2)) is None
    peft = attach_lora(copy.deepcopy(gpt2), LoraConfig(r=2))
    head = peft.get_base_model().lm_head
    assert output_head(peft) is head and output_head(AdapterDisabled(peft)) is head


def _qa(n: int, seed: int) -> TokenData:
    g = torch.Generator().manual_seed(seed)
    seqs, plens = [], []
    for _ in range(n):
        p, a = int(torch.randint(3, 10, (1,), generator=g)), int(torch.randint(2, 7, (1,), generator=g))
        seqs.append(torch.randint(2, V, (p + a,), generator=g).tolist())
        plens.append(p)
    return TokenData.from_sequences(seqs, PAD, plens)


@pytest.mark.parametrize("make", [lambda: build_tiny_gpt2(V, 1), lambda: NoKwargs(build_tiny_gpt2(V, 1)), OwnHead])
def test_scored_logits_are_the_full_logits_gathered(make):
    model = make().eval()
    b = batch_of(_qa(6, 0), torch.arange(6))
    full = b.logits(model)
    logits, labels = b.scored_logits(model)
    index, window = scored_windows(b.labels)
    assert logits.shape[:2] == index.shape and index.shape[1] < full.shape[1]  # the prompts were skipped
    torch.testing.assert_close(logits, full.gather(1, index.unsqueeze(-1).expand(-1, -1, V)), rtol=1e-5, atol=1e-6)
    assert torch.equal(labels, window)
    torch.testing.assert_close(mean_nll(logits, labels), mean_nll(full, b.labels), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sequence_nll(logits, labels), sequence_nll(full, b.labels), rtol=1e-6, atol=1e-6)


METHODS = [("grad_ascent", {}), ("grad_diff", {}), ("npo", {}), ("simnpo", {}), ("ce_u", {}), ("nlul", {}),
           ("nlul", {"penalty": "qkl"}), ("mean_teacher", {}), ("wga", {}), ("satimp", {}), ("undial", {}), ("undial", {"mask_unscored": True}),
           ("pdu", {}), ("pdu", {"faithful_mask": False}), ("idk_dpo", {}), ("altpo", {}), ("subnet", {}),
           ("balanced_subnet", {})]


def _full_windows(labels):
    B, T = labels.shape
    return torch.arange(T).expand(B, T), labels


def _loss_and_grads(name, params, model, data, batch):
    method = build_method(name, {"batch_size": 4, "retain_batch_size": 4, **params})
    trained = method.setup(model, data, 0)
    torch.manual_seed(1)  # the same dropout masks in both runs
    loss, _ = method.loss(model, batch)
    grads = torch.autograd.grad(loss, trained, allow_unused=True)
    return loss.detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(trained, grads)]


@pytest.mark.parametrize("name, params", METHODS, ids=lambda x: x if isinstance(x, str) else "-".join(map(str, x.values())))
def test_every_loss_equals_its_full_logits_value_and_gradient(name, params, monkeypatch):
    torch.manual_seed(0)
    forget, retain = _qa(4, 1), _qa(8, 2)
    answers = [list(range(3, 3 + k)) for k in (2, 3, 4, 5)]
    data = LMUnlearnData(forget, retain, {"alternate": with_answers(forget, answers, PAD)})
    batch = ForgetRetainBatch(batch_of(forget, torch.arange(4)), batch_of(retain, torch.arange(4)))
    for b in (batch.forget, batch.retain):
        assert scored_windows(b.labels)[0].shape[1] < b.labels.shape[1]
    base = build_tiny_gpt2(V, 1).train()
    loss, grads = _loss_and_grads(name, params, copy.deepcopy(base), data, batch)
    monkeypatch.setattr(scored, "scored_windows", _full_windows)  # every position, as the losses were written
    full_loss, full_grads = _loss_and_grads(name, params, copy.deepcopy(base), data, batch)
    assert torch.isfinite(loss) and any(float(g.abs().sum()) > 0 for g in grads)
    torch.testing.assert_close(loss, full_loss, rtol=1e-5, atol=1e-6)
    for g, f in zip(grads, full_grads):
        torch.testing.assert_close(g, f, rtol=1e-4, atol=1e-6)
