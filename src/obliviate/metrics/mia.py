"""Membership-inference attacks on causal LMs and their ROC-AUC, as MUSE (Shi et al., 2024) and open-unlearning
(OU) compute them: loss, zlib, Min-K%, Min-K%++, reference-model and gradient-norm scores.

Every attack score is *loss-shaped*: higher means the text looks less like training data. The two references differ
in three places, chosen here with ``convention`` ("muse" or "ou"; see docs/methods.md, "MIA family and PrivLeak"):
- which tokens the per-token attacks (Min-K%, Min-K%++) see: MUSE scores every labelled next-token target (its raw
  text carries no mask, so: tokens 1..N-1); OU's ``tokenwise_logprobs`` drops the *last* labelled target (meant to be
  the EOS of QA data; on pretraining text it is the last real token). The loss attack uses every target in both.
- Min-K% keeps the lowest ``int(n*k)`` log-probs: MUSE has no floor (NaN when n*k < 1), OU takes max(1, .) and
  scores an empty item 0;
- the AUC: the first set (forget) gets label 0 and the second (holdout) label 1 in both; OU feeds the loss-shaped
  score to ``roc_auc_score``, MUSE feeds ``-score`` to ``roc_curve`` + ``auc``, so AUC_OU = 1 - AUC_MUSE exactly.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError, unknown_name_error
from obliviate.families.lm import TokenData, batch_of
from obliviate.losses.nll import IGNORE_INDEX, mean_nll, shift_labels, token_nll
from obliviate.metrics.base import register_metric
from obliviate.types import MetricResult, Paper

ATTACK_PAPERS: dict[str, Paper | None] = {  # where each attack comes from (the AUC/PrivLeak wiring is MUSE's and OU's)
    "loss": Paper("Privacy Risk in Machine Learning: Analyzing the Connection to Overfitting", "1709.01604", 2018,
                  "Yeom et al."),
    "zlib": Paper("Extracting Training Data from Large Language Models", "2012.07805", 2021, "Carlini et al."),
    "min_k": Paper("Detecting Pretraining Data from Large Language Models", "2310.16789", 2024, "Shi et al."),
    "min_k_pp": Paper("Min-K%++: Improved Baseline for Detecting Pre-Training Data from Large Language Models",
                      "2404.02936", 2024, "Zhang et al."),
    "reference": Paper("Extracting Training Data from Large Language Models", "2012.07805", 2021, "Carlini et al."),
    "gradnorm": None,
}
CONVENTIONS = ("muse", "ou")
ATTACKS = ("loss", "zlib", "min_k", "min_k_pp", "reference", "gradnorm")


def check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise unknown_name_error("MIA convention", convention, CONVENTIONS)
    return convention


def scored_mask(mask: Tensor, convention: str) -> Tensor:
    """Shifted-target mask (B, T-1) -> the targets the per-token attacks score: all of them (MUSE) or all but each
    row's last (OU's ``tokenwise_logprobs``)."""
    if check_convention(convention) == "muse":
        return mask
    last = mask & (mask.long().cumsum(1) == mask.long().sum(1, keepdim=True))  # the last True of each row
    return mask & ~last


def token_logprobs(logits: Tensor, labels: Tensor, convention: str = "muse") -> list[Tensor]:
    """Per-item float32 log p(target) of the targets ``convention`` scores. logits (B, T, V), labels (B, T) with -100
    where unscored -> B tensors (n_i,). For MUSE's numbers label every token of the text (BOS included, if the
    tokenizer adds one): then tokens 1..N-1 are scored, as MUSE does."""
    targets, mask = shift_labels(labels)
    lp = -token_nll(logits[:, :-1], targets)  # (B, T-1)
    keep = scored_mask(mask, convention)
    return [lp[i][keep[i]] for i in range(lp.shape[0])]


def min_k_pp_z(logits: Tensor, targets: Tensor) -> Tensor:
    """Min-K%++ per-token z (OU): (log p(target) - mu) / sigma with mu = sum p log p, sigma^2 = sum p (log p)^2 - mu^2
    over the full vocabulary, sigma^2 clamped >= 1e-6. logits (n, V), targets (n,) -> (n,) float32."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    mu = (p * logp).sum(-1)
    var = ((p * logp.square()).sum(-1) - mu.square()).clamp_min(1e-6)
    return (logp.gather(-1, targets[:, None]).squeeze(-1) - mu) / var.sqrt()


def _check_k(k: float) -> None:
    if not 0.0 < k <= 1.0:
        raise ObliviateError(f"Min-K% fraction k must be in (0, 1], got {k}")


def min_k_score(values: Tensor | Sequence[float], k: float = 0.4, floor: bool = False) -> float:
    """-mean of the lowest ``int(n*k)`` values (token log-probs for Min-K%, z for Min-K%++), in float32.

    ``floor=False`` is MUSE's: NaN when int(n*k) == 0 (a text shorter than 1/k tokens; the AUC then refuses it).
    ``floor=True`` is OU's: at least one value, and 0 for an item with none."""
    _check_k(k)
    x = torch.as_tensor(values, dtype=torch.float32).flatten()
    m = int(x.numel() * k)
    if floor:
        if x.numel() == 0:
            return 0.0
        m = max(1, m)
    if m == 0:
        return math.nan
    return -float(torch.sort(x).values[:m].mean())


def zlib_score(loss: float, text: str) -> float:
    """loss / len(zlib.compress(utf-8 bytes of ``text``)) (MUSE's PPL/zlib, OU's zlib)."""
    return loss / len(zlib.compress(text.encode("utf-8")))


def mean_grad_norm(grads: Sequence[Tensor | None], p: float = 2.0) -> float:
    """Mean over parameters of ||grad||_p, skipping parameters without a gradient (OU's gradnorm)."""
    norms = [g.detach().float().norm(p) for g in grads if g is not None]
    if not norms:
        raise ObliviateError("gradient-norm attack: no parameter received a gradient")
    return float(torch.stack(norms).mean())


def labelled_texts(data: TokenData, tokenizer: Any) -> list[str]:
    """OU's zlib text: each row's labelled tokens decoded with ``skip_special_tokens``."""
    return [tokenizer.decode(row[row != IGNORE_INDEX].tolist(), skip_special_tokens=True) for row in data.labels]


@dataclass
class ItemStats:
    """What one pass of a model over a split gives the attacks, per item."""

    loss: list[float]  # mean NLL over every scored target (both references' loss); NaN for an item with none
    logprobs: list[Tensor]  # float32 log p of the targets the convention scores
    zscores: list[Tensor] | None = None  # Min-K%++ z of the same targets


@torch.no_grad()
def item_stats(model: nn.Module, data: TokenData, convention: str = "muse", batch_size: int = 16,
               zscores: bool = False) -> ItemStats:
    """Run ``model`` (eval mode, restored after) over ``data`` in batches and keep per-item losses and log-probs."""
    check_convention(convention)
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = ItemStats([], [], [] if zscores else None)
    try:
        for s in range(0, len(data), batch_size):
            b = batch_of(data, torch.arange(s, min(s + batch_size, len(data)))).to(device)
            logits, labels = b.scored_logits(model)
            logits = logits[:, :-1]  # (B, K-1, V) predicting the shifted targets
            targets, mask = shift_labels(labels)
            lp = -token_nll(logits, targets)  # (B, T-1) float32
            m = mask.float()
            out.loss.extend(((-lp * m).sum(1) / m.sum(1)).tolist())  # 0/0 = NaN for an unscored item
            keep = scored_mask(mask, convention)
            for i in range(lp.shape[0]):
                out.logprobs.append(lp[i][keep[i]].cpu())
                if out.zscores is not None:
                    out.zscores.append(min_k_pp_z(logits[i][keep[i]], targets[i][keep[i]]).cpu())
    finally:
        model.train(was)
    return out


def grad_norm_scores(model: nn.Module, data: TokenData, p: float = 2.0, only_trainable: bool = False) -> list[float]:
    """OU's gradnorm per item (batch size 1): mean over parameters of ||d(mean token NLL)/d param||_p.

    Every parameter counts (``only_trainable`` keeps those with requires_grad, as OU sees a partly frozen model).
    Gradients come from ``torch.autograd.grad``, so existing ``.grad`` fields are untouched; requires_grad flags
    and train/eval mode are restored."""
    params = [q for q in model.parameters() if q.requires_grad or not only_trainable]
    flags = [q.requires_grad for q in params]
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    scores = []
    try:
        for q in params:
            q.requires_grad_(True)
        with torch.enable_grad():
            for i in range(len(data)):
                b = batch_of(data, torch.tensor([i])).to(device)
                if not bool((b.labels[:, 1:] != IGNORE_INDEX).any()):
                    scores.append(math.nan)  # no scored token: no loss to differentiate (OU gets NaN too)
                    continue
                loss = mean_nll(*b.scored_logits(model))
                scores.append(mean_grad_norm(torch.autograd.grad(loss, params, allow_unused=True), p))
    finally:
        for q, f in zip(params, flags):
            q.requires_grad_(f)
        model.train(was)
    return scores


def attack_scores(model: nn.Module, data: TokenData, attack: str, *, convention: str = "muse", k: float = 0.4,
                  floor: bool | None = None, texts: Sequence[str] | None = None, ref_model: nn.Module | None = None,
                  batch_size: int = 16) -> list[float]:
    """Per-item loss-shaped scores of one attack on one split. ``floor`` (Min-K%, Min-K%++) defaults to the
    convention's (MUSE: none, OU: 1). ``texts`` (zlib): one string per row; ``ref_model`` (reference)."""
    if attack not in ATTACKS:
        raise unknown_name_error("MIA attack", attack, ATTACKS)
    check_convention(convention)
    if attack == "zlib" and (texts is None or len(texts) != len(data)):
        raise ObliviateError(f"the zlib attack needs one text per row: {len(data)} rows, "
                             f"{'no texts' if texts is None else f'{len(texts)} texts'}")
    if attack == "reference" and ref_model is None:
        raise ObliviateError("the reference attack needs ref_model (e.g. the model before fine-tuning)")
    if attack == "gradnorm":
        return grad_norm_scores(model, data)
    stats = item_stats(model, data, convention, batch_size, zscores=attack == "min_k_pp")
    if attack == "loss":
        return stats.loss
    if attack == "zlib":
        return [zlib_score(loss, t) for loss, t in zip(stats.loss, texts or ())]
    if attack == "reference":
        assert ref_model is not None  # checked above
        ref = item_stats(ref_model, data, convention, batch_size).loss
        return [t - r for t, r in zip(stats.loss, ref)]
    use_floor = convention == "ou" if floor is None else floor
    values = stats.logprobs if stats.zscores is None else stats.zscores
    return [min_k_score(v, k, use_floor) for v in values]


def membership_auc(scores_a: Sequence[float], scores_b: Sequence[float], convention: str = "muse",
                   names: tuple[str, str] = ("forget", "holdout"), on_nan: str = "raise") -> tuple[float, float]:
    """(AUC, MUSE's best balanced accuracy) of loss-shaped scores; set A (``names[0]``) is label 0, set B label 1.

    OU: ``roc_auc_score(labels, scores)``; MUSE: ``auc(*roc_curve(labels, -scores)[:2])`` (= 1 - OU's). NaN scores
    raise (as MUSE's roc_curve does) unless ``on_nan="drop"``. The accuracy is max(1 - (fpr + 1 - tpr)/2) over the
    thresholds (MUSE's ``sweep``) and does not depend on the convention."""
    from sklearn.metrics import auc, roc_auc_score, roc_curve

    check_convention(convention)
    if on_nan not in ("raise", "drop"):
        raise unknown_name_error("on_nan policy", on_nan, ("raise", "drop"))
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    nan_a, nan_b = int(np.isnan(a).sum()), int(np.isnan(b).sum())
    if (nan_a or nan_b) and on_nan == "raise":
        raise ObliviateError(
            f"membership AUC: {nan_a} of {len(a)} {names[0]} and {nan_b} of {len(b)} {names[1]} scores are NaN "
            "(Min-K% without a floor gives NaN when int(n_tokens*k) == 0, i.e. texts shorter than 1/k tokens; an item "
            "with no scored token has no loss); use convention='ou' / floor=True, on_nan='drop', or longer texts")
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        raise ObliviateError(f"membership AUC needs scores from both sets: {names[0]} has {len(a)}, {names[1]} has "
                             f"{len(b)} (after dropping NaN)")
    labels = np.r_[np.zeros(len(a)), np.ones(len(b))]
    scores = np.r_[a, b]
    if not np.isfinite(scores).all():  # sklearn refuses inf; the AUC depends only on the order, which ranks keep
        from scipy.stats import rankdata

        scores = rankdata(scores)
    fpr, tpr, _ = roc_curve(labels, -scores)
    acc = float(np.max(1.0 - (fpr + (1.0 - tpr)) / 2.0))
    if convention == "ou":
        return float(roc_auc_score(labels, scores)), acc
    return float(auc(fpr, tpr)), acc


def _jsonable(xs: Sequence[float]) -> list[float | None]:
    return [None if math.isnan(x) else float(x) for x in xs]


@dataclass
class MIAResult:
    """One attack on two sets: per-item loss-shaped scores, the AUC and the convention it was taken under."""

    attack: str
    convention: str
    auc: float
    names: tuple[str, str]  # (label-0 set, label-1 set); (forget, holdout) in both references
    scores: tuple[list[float], list[float]]  # per item, higher = looks less like a member
    k: float | None = None  # Min-K% fraction, where it applies
    acc: float | None = None  # MUSE sweep's best balanced accuracy

    @property
    def higher_is_better(self) -> bool:
        """Unlearning pushes a memorised forget set from AUC ~0 (MUSE) / ~1 (OU) toward the retrained ~0.5."""
        return self.convention == "muse"

    def auc_as(self, convention: str) -> float:
        """This AUC under the other convention: 1 - AUC (the sign of the score flips, ties count 1/2 either way)."""
        return self.auc if check_convention(convention) == self.convention else 1.0 - self.auc

    def to_dict(self) -> dict[str, Any]:
        return {"attack": self.attack, "convention": self.convention, "auc": self.auc, "acc": self.acc, "k": self.k,
                "names": list(self.names), "scores": {n: _jsonable(s) for n, s in zip(self.names, self.scores)}}

    def as_metric_result(self) -> MetricResult:
        return MetricResult(f"mia_{self.attack}", self.auc, self.higher_is_better,
                            per_item=_jsonable(self.scores[0]) + _jsonable(self.scores[1]),
                            breakdown={f"n_{self.names[0]}": len(self.scores[0]),
                                       f"n_{self.names[1]}": len(self.scores[1])})


def membership_inference(model: nn.Module, set_a: TokenData, set_b: TokenData, attack: str = "min_k", *,
                         convention: str = "muse", k: float = 0.4, floor: bool | None = None,
                         texts: tuple[Sequence[str], Sequence[str]] | None = None, tokenizer: Any = None,
                         ref_model: nn.Module | None = None, names: tuple[str, str] = ("forget", "holdout"),
                         on_nan: str = "raise", batch_size: int = 16) -> MIAResult:
    """Score both sets with ``attack`` and take the AUC (set A label 0, set B label 1). The defaults give MUSE's
    PrivLeak input, ``forget_holdout_Min-40%``. zlib takes ``texts`` (MUSE: the raw texts) or a ``tokenizer`` to
    decode the labelled tokens (OU)."""
    if attack == "zlib" and texts is None and tokenizer is not None:
        texts = (labelled_texts(set_a, tokenizer), labelled_texts(set_b, tokenizer))
    score = partial(attack_scores, model, attack=attack, convention=convention, k=k, floor=floor,
                    ref_model=ref_model, batch_size=batch_size)
    sa = score(set_a, texts=None if texts is None else texts[0])
    sb = score(set_b, texts=None if texts is None else texts[1])
    auc, acc = membership_auc(sa, sb, convention, names, on_nan)
    return MIAResult(attack, convention, auc, names, (sa, sb), k if attack in ("min_k", "min_k_pp") else None, acc)


def _register_attacks() -> None:
    """``mia_<attack>`` in METRICS, OU's metric names, OU's convention by default (``convention="muse"`` flips)."""
    what = {"loss": "mean token NLL", "zlib": "loss / zlib-compressed length of the text",
            "min_k": "-mean of the lowest k=40% token log-probs", "min_k_pp": "Min-K%++ (vocabulary-standardised)",
            "reference": "target loss - reference-model loss", "gradnorm": "mean per-parameter gradient 2-norm"}
    for attack, desc in what.items():
        fn = partial(membership_inference, attack=attack, convention="ou")
        register_metric(f"mia_{attack}", higher_is_better=False, paper=ATTACK_PAPERS[attack],
                        description=f"membership AUC (forget=0 vs holdout=1, OU convention; retrained ~0.5, lower = "
                                    f"more forgotten) of {desc}")(fn)


_register_attacks()
