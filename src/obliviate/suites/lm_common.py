"""Pieces the LM benchmark suites (``tofu``, ``muse``) share: a small GPT-2 for a tokenizer trained here, token-row
concatenation, one training stage, and saving / loading a model together with its tokenizer and its reference
(the retrained model's numbers, so unlearning jobs never retrain it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from obliviate.families.lm import TokenData


def small_gpt2(tokenizer: Any, n_layer: int, n_embd: int, n_head: int, n_positions: int, seed: int,
               device: Any = None) -> nn.Module:
    """A GPT-2 built from a config for ``tokenizer`` (its vocabulary, EOS and pad), initialised from ``seed``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_layer=n_layer, n_embd=n_embd, n_head=n_head,
                                           n_positions=n_positions, bos_token_id=tokenizer.eos_token_id,
                                           eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    return model.to(device or "cpu")


def concat_rows(*parts: TokenData) -> TokenData:
    """The rows of every part in order, right-padded to the widest (pad id 0, mask 0, label -100)."""
    T = max(p.input_ids.shape[1] for p in parts)

    def pad(x: torch.Tensor, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, T - x.shape[1]), value=value)

    return TokenData(torch.cat([pad(p.input_ids, 0) for p in parts]),
                     torch.cat([pad(p.attention_mask, 0) for p in parts]),
                     torch.cat([pad(p.labels, -100) for p in parts]))


def train_stage(model: nn.Module, rows: TokenData, *, lr: float, weight_decay: float, epochs: int, batch_size: int,
                seed: int, progress: bool = False) -> float:
    """One supervised stage (AdamW, betas (0.9, 0.999), mean NLL over the scored labels); -> the final loss."""
    from obliviate.train.pretrain import TrainConfig, pretrain

    cfg = TrainConfig(lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999), epochs=epochs, batch_size=batch_size,
                      checkpoint_every=max(epochs, 1))
    return float(pretrain(model, rows, cfg, seed, progress=progress).final_loss)


def save_with_reference(model: nn.Module, path: Path, meta: dict[str, Any]) -> None:
    """``save_pretrained`` + obliviate.json + the model's ``obliviate_reference`` (reference.json) and
    ``obliviate_tokenizer``, in one atomic directory replace: the directory is a usable HF model."""
    from obliviate.io import atomic_directory

    ref = getattr(model, "obliviate_reference", None)
    tok = getattr(model, "obliviate_tokenizer", None)

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        (tmp / "obliviate.json").write_text(json.dumps(meta, indent=2, default=str))
        if ref is not None:
            (tmp / "reference.json").write_text(json.dumps(ref))
        if tok is not None:
            tok.save_pretrained(tmp)

    atomic_directory(path, fill, overwrite=True)


def load_with_reference(path: Path, device: Any) -> nn.Module:
    """The model saved by :func:`save_with_reference`, its reference (if any) as ``obliviate_reference``."""
    from obliviate.io import load_causal_lm, read_json

    model = load_causal_lm(path, device=device or "cpu")
    if (Path(path) / "reference.json").is_file():
        model.obliviate_reference = read_json(Path(path) / "reference.json")
    return model


def stored_reference(model: nn.Module, data_hash: str) -> dict[str, Any] | None:
    """The reference saved with ``model`` when it was built on data with this content hash, else None."""
    stored = getattr(model, "obliviate_reference", None)
    if isinstance(stored, dict) and stored.get("data_hash") == data_hash:
        return {k: v for k, v in stored.items() if k != "data_hash"}
    return None


class ModelWithReference:
    """Suite mixin: models saved and loaded with their tokenizer and reference (:func:`save_with_reference`)."""

    def save_model(self, model: nn.Module, path: Path, meta: dict[str, Any]) -> None:
        save_with_reference(model, path, meta)

    def load_model(self, path: Path, device: Any) -> nn.Module:
        return load_with_reference(path, device)

    def model_hash(self, model: nn.Module) -> str:
        from obliviate.io import hash_model

        return hash_model(model)
