"""TinyMem GPT-2 models (Sakarvadia et al., 2024, spec 1.2): HF ``GPT2LMHeadModel`` built from a ``GPT2Config``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from obliviate.data.tinymem import BOS, EOS, PAD, VOCAB_SIZE
from obliviate.errors import ObliviateError


@dataclass(frozen=True)
class TinyMemModelConfig:
    """Paper defaults: 4 heads, 128-d, relu, no dropout, init std 0.8/sqrt(n_embd); n_layer in {2, 4, 8, 16}."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    n_positions: int = 150
    vocab_size: int = VOCAB_SIZE
    activation: Literal["relu", "gelu_new", "gelu"] = "relu"
    init_std_scale: float = 0.8  # initializer_range = init_std_scale / sqrt(n_embd)
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size"):
            if getattr(self, name) <= 0:
                raise ObliviateError(f"model.{name} must be > 0, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ObliviateError(f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})")

    def hf_config(self) -> GPT2Config:
        return GPT2Config(
            vocab_size=self.vocab_size,
            n_positions=self.n_positions,
            n_embd=self.n_embd,
            n_layer=self.n_layer,
            n_head=self.n_head,
            activation_function=self.activation,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            initializer_range=self.init_std_scale / math.sqrt(self.n_embd),
            bos_token_id=BOS,
            eos_token_id=EOS,
            pad_token_id=PAD,
        )


def build_model(cfg: TinyMemModelConfig, seed: int) -> GPT2LMHeadModel:
    """A freshly initialised TinyMem model; the seed fixes the initial weights."""
    with torch.random.fork_rng(devices=[]):  # the caller's RNG state (CPU and CUDA) is left as it was
        torch.manual_seed(seed)
        model = GPT2LMHeadModel._from_config(cfg.hf_config(), attn_implementation=cfg.attn_implementation)
    return model
