"""The causal-LM family: token data as the Hugging Face ecosystem passes it (``input_ids``, ``attention_mask``,
``labels`` with -100 where a position is not scored), batches, and what an LM unlearning method receives.

Why labels and not "targets != pad_id": with pad = EOS (GPT-2, many Llama setups) that rule silently drops every
real EOS target, and it cannot express answer-only loss for QA data. Here a row's scored positions are explicit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.splits import check_splits
from obliviate.losses.nll import IGNORE_INDEX  # labels value of a position that is not scored (the HF convention)


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"a {x.ndim}-D {str(x.dtype).replace('torch.', '')} tensor of shape {tuple(x.shape)}"
    return f"a {type(x).__name__}"


@dataclass
class TokenData:
    """Token rows of one split. input_ids, attention_mask, labels: (N, T) int64; ``labels`` is -100 where a target
    is not scored (padding, prompts of QA pairs). Validated on construction."""

    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        for name in ("input_ids", "attention_mask", "labels"):
            t = getattr(self, name)
            if not isinstance(t, Tensor) or t.ndim != 2 or t.dtype.is_floating_point or t.dtype == torch.bool:
                hint = (" (this looks like an image batch: the lm family takes token ids; classifiers take "
                        "LabeledData)") if isinstance(t, Tensor) and t.ndim == 4 else ""
                raise ObliviateError(f"TokenData.{name} must be a 2-D integer tensor (N, T), got {_describe(t)}{hint}")
        if not (self.input_ids.shape == self.attention_mask.shape == self.labels.shape):
            raise ObliviateError(f"TokenData shapes differ: input_ids {tuple(self.input_ids.shape)}, attention_mask "
                                 f"{tuple(self.attention_mask.shape)}, labels {tuple(self.labels.shape)}")
        if not bool(((self.attention_mask == 0) | (self.attention_mask == 1)).all()):
            raise ObliviateError("TokenData.attention_mask must hold only 0 and 1")

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def scored_tokens(self) -> Tensor:
        """Number of scored next-token targets per row (N,)."""
        return (self.labels[:, 1:] != IGNORE_INDEX).sum(1)

    def select(self, idx: Tensor) -> TokenData:
        return TokenData(self.input_ids[idx], self.attention_mask[idx], self.labels[idx])

    @classmethod
    def from_rows(cls, rows: Tensor, pad_id: int, prompt_len: Tensor | None = None,
                  score_pad: bool = False) -> TokenData:
        """Right-padded rows where ``pad_id`` is a dedicated padding token (e.g. TinyMem's PAD = 13).

        PAD positions get attention 0 and label -100, unless ``score_pad`` (the TinyMem reference trains on every
        position, PAD included: then PAD is an ordinary token). ``prompt_len`` (N,) masks each row's first tokens
        from the loss (answer-only). When pad equals EOS use :meth:`from_sequences`, which keeps real EOS tokens.
        """
        if not isinstance(rows, Tensor) or rows.ndim != 2:
            raise ObliviateError(f"rows must be a 2-D token tensor (N, T), got {_describe(rows)}")
        rows = rows.long()
        real = torch.ones_like(rows, dtype=torch.bool) if score_pad else rows != pad_id
        labels = rows.masked_fill(~real, IGNORE_INDEX)
        if prompt_len is not None:
            labels = labels.masked_fill(torch.arange(rows.shape[1])[None, :] < prompt_len[:, None], IGNORE_INDEX)
        return cls(rows, real.long(), labels)

    @classmethod
    def from_sequences(cls, seqs: Sequence[Sequence[int]], pad_id: int, prompt_lens: Sequence[int] | None = None,
                       max_len: int | None = None) -> TokenData:
        """Right-pad token lists; padding is known from each list's length, so pad_id may equal EOS."""
        if len(seqs) == 0:
            return cls(*(torch.empty((0, 1), dtype=torch.long) for _ in range(3)))
        T = max_len or max(len(s) for s in seqs)
        ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        labels = torch.full((len(seqs), T), IGNORE_INDEX, dtype=torch.long)
        for i, s in enumerate(seqs):
            s = list(s)[:T]
            n = len(s)
            ids[i, :n] = torch.tensor(s, dtype=torch.long)
            mask[i, :n] = 1
            start = 0 if prompt_lens is None else min(int(prompt_lens[i]), n)
            labels[i, start:n] = ids[i, start:n]
        return cls(ids, mask, labels)


@dataclass
class LMBatch:
    """One step's rows (B, T) plus their indices into the split (B,) (for per-item logs)."""

    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor
    index: Tensor

    def to(self, device: torch.device | str) -> LMBatch:
        return LMBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device),
                       self.index)

    def model_inputs(self) -> dict[str, Tensor]:
        """Keyword arguments for an HF causal LM. Right-padded batches (padding only at the end of rows) get an
        all-ones mask: under causal attention no real position sees a later one and padded positions are not
        scored, so the scored logits are the same as with the padding mask, and the kernel keeps its fast unmasked
        path. Other layouts (left padding, holes) get the real mask and position ids that skip the padding."""
        m = self.attention_mask
        if bool((m[:, 1:] <= m[:, :-1]).all()):
            return {"input_ids": self.input_ids, "attention_mask": torch.ones_like(m)}
        return {"input_ids": self.input_ids, "attention_mask": m, "position_ids": (m.cumsum(1) - 1).clamp_min(0)}

    def logits(self, model: nn.Module) -> Tensor:
        """(B, T, V) logits of ``model`` on this batch (every position: for losses over all attended positions, e.g.
        the KL retain penalty). Losses over scored positions only use :meth:`scored_logits`."""
        return model(**self.model_inputs()).logits

    def scored_logits(self, model: nn.Module) -> tuple[Tensor, Tensor]:
        """(logits (B, K, V), labels (B, K)) over each row's scored span only (see :mod:`obliviate.families.scored`):
        for losses that read logits only where a target is scored; same value, less work (prompts are skipped)."""
        from obliviate.families.scored import scored_logits

        return scored_logits(model, self.model_inputs(), self.labels)


def batch_of(data: TokenData, idx: Tensor, trim: bool = True) -> LMBatch:
    """Rows ``idx`` of ``data`` as a batch; with ``trim``, trailing columns where no row is attended or scored are
    dropped (they cannot change any scored position under causal attention)."""
    ids, mask, labels = data.input_ids[idx], data.attention_mask[idx], data.labels[idx]
    if trim and ids.shape[1] > 1:
        live = ((mask != 0) | (labels != IGNORE_INDEX)).any(0).nonzero()
        end = int(live[-1]) + 1 if live.numel() else 1
        ids, mask, labels = ids[:, :end], mask[:, :end], labels[:, :end]
    return LMBatch(ids, mask, labels, idx)


@dataclass
class ForgetRetainBatch:
    """One unlearning step: forget rows and, for methods that use them, retain rows."""

    forget: LMBatch
    retain: LMBatch | None = None


def _describe_split(split: object) -> str:
    """What was given instead of TokenData, and how to build the right thing."""
    hint = ""
    if isinstance(split, Tensor):
        hint = ("; build it with LMUnlearnData.from_rows(forget_rows, retain_rows, pad_id) or TokenData"
                if split.ndim == 2 and not split.dtype.is_floating_point else
                " -- this does not look like token ids (an image batch? that is the classifier family)")
    return _describe(split) + hint


@dataclass
class LMUnlearnData:
    """What an LM unlearning method receives: a non-empty forget split, an optional retain split, and named extra
    splits (e.g. a regularisation corpus). Validated on construction."""

    forget: TokenData
    retain: TokenData | None = None
    extra: dict[str, TokenData] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_splits({"forget": self.forget, "retain": self.retain, **self.extra}, TokenData, "rows",
                     describe=_describe_split)
        if int(self.forget.scored_tokens.sum()) == 0:
            raise ObliviateError("the forget set has no scored tokens (every label is -100): nothing to unlearn")

    @classmethod
    def from_rows(cls, forget: Tensor, retain: Tensor | None, pad_id: int,
                  forget_prompt_len: Tensor | None = None) -> LMUnlearnData:
        """Right-padded token rows with a dedicated pad token (see :meth:`TokenData.from_rows`)."""
        return cls(TokenData.from_rows(forget, pad_id, forget_prompt_len),
                   None if retain is None else TokenData.from_rows(retain, pad_id))

    @property
    def has_retain(self) -> bool:
        return self.retain is not None and len(self.retain) > 0


def drop_trailing_token_columns(batch: LMBatch, token_id: int, keep: int = 1) -> LMBatch:
    """Drop trailing columns that hold ``token_id`` in every row, keeping ``keep`` of them.

    Only for data that *scores* padding (TinyMem pre-training, as the reference): it skips PAD->PAD targets past the
    longest row, which never change an earlier position -- a documented speed deviation (docs/methods.md)."""
    real = (batch.input_ids != token_id).any(0).nonzero()
    end = min(batch.input_ids.shape[1], (int(real[-1]) + 1 if real.numel() else 0) + keep)
    end = max(end, 1)
    return LMBatch(batch.input_ids[:, :end], batch.attention_mask[:, :end], batch.labels[:, :end], batch.index)
