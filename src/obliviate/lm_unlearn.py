"""Unlearn forget data from a local Hugging Face causal LM, given as files (no suite involved).

``obliviate unlearn --model DIR --forget F [--retain R] --method NAME --out OUT`` and, from Python::

    from obliviate.lm_unlearn import unlearn_files

    res = unlearn_files("path/to/model", "forget.jsonl", "retain.jsonl", method="grad_diff", out="runs/gd",
                        epochs=5)            # keyword arguments set the method's config (its paper defaults otherwise)
    res.model, res.tokenizer, res.results     # the edited model, its tokenizer, the results document

``OUT/model`` holds the edited model and tokenizer (``save_pretrained``, safetensors) and ``OUT/results.json`` the
provenance: method and resolved parameters, seed, versions, model hashes before/after, data sizes and hashes, the
method's logs, forget/retain NLL before and after, and the wall time and peak memory of each phase.

With ``--lora`` (``lora=LoraConfig(...)``) only a LoRA adapter trains (PEFT; the base weights stay frozen) and
``OUT/model`` holds the adapter (``adapter_config.json``, ``adapter_model.safetensors``; reload it with
``obliviate.lora.load_lora(MODEL_DIR, OUT/model)``), or with ``--merge`` (``merge=True``) the full model with the
adapter merged into its weights.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from obliviate.data.lm_files import DEFAULT_TEMPLATE, check_vocab, lm_unlearn_data, overlap, pad_id_of
from obliviate.errors import ObliviateError
from obliviate.lora import LoraConfig
from obliviate.metrics.lm_quality import dataset_nll as mean_nll
from obliviate.profiling import track

RESULTS = "results.json"
DEFAULT_MAX_LENGTH = 512
FORMAT = "obliviate-lm-files/1"


@dataclass
class FilesResult:
    """What :func:`unlearn_files` returns: the edited model and its tokenizer, the results document (also written
    to ``out/results.json``) and where the model was saved (None when ``out`` is None)."""

    model: nn.Module
    tokenizer: Any
    results: dict[str, Any] = field(default_factory=dict)
    model_path: Path | None = None


def lm_method_class(method: str) -> type:
    """The registered lm-family method ``method``; another family's method is a one-line error naming the valid."""
    from obliviate.methods import METHODS

    cls = METHODS.get(method)  # an unknown name: error with did-you-mean and the valid names
    if cls.family != "lm":
        valid = [n for n in METHODS.names() if METHODS.get(n).family == "lm"]
        raise ObliviateError(f"method {method!r} is for the {cls.family} family; a causal LM takes lm methods "
                             f"(valid: {', '.join(valid)})")
    return cls


def _check_remote_code(model_dir: Path, trust_remote_code: bool) -> None:
    if trust_remote_code:
        return
    for name in ("config.json", "tokenizer_config.json"):
        f = model_dir / name
        if not f.is_file():
            continue
        try:
            cfg = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ObliviateError(f"{str(f)!r} is not valid JSON: {exc}") from None
        if isinstance(cfg, dict) and cfg.get("auto_map"):
            raise ObliviateError(f"{str(f)!r} needs the model's own Python code (auto_map), which is not run by "
                                 "default; pass --trust-remote-code (trust_remote_code=True) if you trust it")


def load_model_and_tokenizer(model_dir: str | Path, device: Any = "cpu",
                             trust_remote_code: bool = False) -> tuple[nn.Module, Any]:
    """A local HF causal LM (safetensors) and its tokenizer; nothing is downloaded."""
    from transformers import AutoTokenizer

    from obliviate.io import load_causal_lm

    d = Path(model_dir)
    if d.is_dir():
        _check_remote_code(d, trust_remote_code)
    model = load_causal_lm(d, device=device, trust_remote_code=trust_remote_code)
    try:
        tok = AutoTokenizer.from_pretrained(d, local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 -- missing or broken tokenizer files raise many exception types
        raise ObliviateError(f"{str(d)!r}: no usable tokenizer ({type(exc).__name__}: {exc})".splitlines()[0]) \
            from None
    return model, tok


def tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    """The files ``tokenizer.save_pretrained`` writes (name -> bytes), to land in the model's atomic save."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="obliviate-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        return {f.name: f.read_bytes() for f in Path(tmp).iterdir() if f.is_file()}


def _split_info(data: Any, source: Any) -> dict[str, Any]:
    from obliviate.io import hash_tensors

    return {"source": str(source) if isinstance(source, (str, Path)) else f"<{type(source).__name__} in memory>",
            "rows": len(data), "max_tokens": int(data.input_ids.shape[1]),
            "scored_tokens": int(data.scored_tokens.sum()),
            "hash": hash_tensors([("input_ids", data.input_ids), ("labels", data.labels)])}


def unlearn_files(model_dir: str | Path, forget: Any, retain: Any = None, method: str = "grad_diff",
                  out: str | Path | None = None, *, template: str = DEFAULT_TEMPLATE, chat_template: bool = False,
                  max_length: int | None = None, seed: int = 0, device: str = "auto", trust_remote_code: bool = False,
                  overwrite: bool = False, progress: bool = False, evaluate: bool = True,
                  method_config: dict[str, Any] | None = None, lora: LoraConfig | dict[str, Any] | bool | None = None,
                  merge: bool = False, idk: bool | str | Path | list[str] | None = None,
                  checkpoint_dir: str | Path | None = None, checkpoint_every: int = 1, resume: bool = False,
                  accelerate_config: str | Path | None = None,
                  **config: Any) -> FilesResult:
    """Unlearn ``forget`` from the HF causal LM in ``model_dir`` with the lm-family ``method``.

    ``forget`` / ``retain``: a ``.jsonl``/``.json`` file of ``{"question", "answer"}`` objects (the answer + EOS is
    scored, the prompt -- ``template`` or, with ``chat_template``, the tokenizer's chat template -- is not), a
    ``.txt`` file (blank-line-separated documents, every token scored), or the same as Python lists. Keyword
    arguments set the method's config (validated; unset fields keep the paper defaults; ``method_config`` is the
    same as a dict, for a field named like a parameter here: ``seed`` is the run seed, which a method whose config
    leaves ``seed`` unset uses). With ``out``, the edited
    model and tokenizer go to ``out/model`` and the results to ``out/results.json`` (an existing results.json is
    kept unless ``overwrite``). ``max_length`` (tokens per row) defaults to 512, or the model's positions when
    fewer. ``evaluate`` measures forget/retain NLL before and after.

    ``lora``: train a LoRA adapter (:func:`obliviate.lora.attach_lora`, seeded with ``seed``) instead of all
    weights; ``out/model`` then holds the adapter, or with ``merge`` the model with the adapter merged in (and the
    returned model is the merged plain model; without ``merge`` it is the ``PeftModel``).

    DPO-style methods (``idk_dpo``, ``altpo``) also take alternate answers (the winners), paired with the forget
    records: ``idk_dpo`` draws one "I don't know" answer per record (seeded with ``seed``) from the built-in pool, or
    from ``idk`` (a file, one answer per line, or a list); ``altpo`` reads them from the forget records' ``alternate``
    key (make them with ``obliviate alternates``).

    ``checkpoint_dir``: checkpoint every ``checkpoint_every`` epochs there; ``resume`` continues from the checkpoint
    found there (bit-identical to an uninterrupted run; a checkpoint of another run is refused), ``overwrite``
    without ``resume`` starts over (the old checkpoint is removed). Under ``torchrun`` / ``accelerate launch`` the
    same call runs on every process: data parallel, or sharded (FSDP) when ``accelerate_config`` (a standard
    accelerate config file) or the launcher's environment asks for it; rank 0 writes the model and results, other
    ranks return their (shard of the) model and the same results without writing."""
    from obliviate.config import to_dict
    from obliviate.context import RunContext
    from obliviate.io import (
        ensure_writable_dir,
        git_dirty,
        git_sha,
        hash_model,
        package_versions,
        save_pretrained_atomic,
        write_json,
    )
    from obliviate.methods import build_method
    from obliviate.runconfig import resolve_device
    from obliviate.train.checkpoint import FILENAME as CHECKPOINT
    from obliviate.train.distributed import barrier, full_state_dict, init_from_env, local_device

    cls = lm_method_class(method)
    if getattr(cls, "needs_retain", False) and retain is None:
        raise ObliviateError(f"method {method!r} needs retain data: give --retain FILE (retain=...)")
    unlearner = build_method(method, {**(method_config or {}), **config}, run_seed=seed)  # validated before loading
    idk, alt_source = _alternates_plan(method, cls, forget, idk)
    if lora is False:
        lora = None
    if lora is not None:
        lora = _check_lora(method, cls, lora)
    elif merge:
        raise ObliviateError("merge saves the LoRA adapter merged into the weights: it needs --lora (lora=...)")
    out_dir = None
    if out is not None:
        out_dir = Path(out)
        for name in (RESULTS, "model"):
            if (out_dir / name).exists() and not overwrite:
                raise ObliviateError(f"{str(out_dir / name)!r} already exists; pass --overwrite (overwrite=True) "
                                     "or choose another --out")
        ensure_writable_dir(out_dir)
    if checkpoint_dir is not None and overwrite and not resume:
        barrier_needed = (Path(checkpoint_dir) / CHECKPOINT).exists()
    else:
        barrier_needed = False
    world = init_from_env(config_file=accelerate_config)
    if resume and checkpoint_dir is None:
        raise ObliviateError("--resume needs --checkpoint-dir DIR (where the interrupted run checkpointed)")
    if barrier_needed:  # overwrite without resume: start over, the old run's checkpoint goes
        if world.main:
            (Path(checkpoint_dir) / CHECKPOINT).unlink(missing_ok=True)
        barrier(world)
    dev = local_device() if world.distributed else resolve_device(device)
    cost: dict[str, Any] = {}
    with track("total") as total:
        with track("load") as c:
            # sharded: every rank loads on the CPU and keeps only its shards on the device (moved after sharding)
            model, tok = load_model_and_tokenizer(model_dir, "cpu" if world.sharded else dev, trust_remote_code)
            check_vocab(tok, model)
            limit = getattr(model.config, "max_position_embeddings", None)
            if max_length is None:
                max_length = min(DEFAULT_MAX_LENGTH, limit) if isinstance(limit, int) and limit > 1 else \
                    DEFAULT_MAX_LENGTH
            if isinstance(limit, int) and 0 < limit < max_length:
                raise ObliviateError(f"max_length {max_length} exceeds the model's {limit} positions; "
                                     f"use --max-length {limit} (max_length={limit}) or less")
            data = lm_unlearn_data(tok, forget, retain, template=template, chat_template=chat_template,
                                   max_length=max_length, alternates=None if alt_source else False,
                                   idk=idk if idk is not None else False, idk_seed=seed)
            check_vocab(tok, model, data)
        cost["load"] = c.to_dict()
        hash_before = hash_model(model)
        lora_doc = None
        if lora is not None:
            from obliviate.lora import attach_lora, lora_info

            with track("attach_lora") as c:
                model = attach_lora(model, lora, seed=seed)
                lora_doc = lora_info(model, lora)
            cost["attach_lora"] = c.to_dict()
        nll: dict[str, dict[str, float]] = {}
        if evaluate:
            with track("eval_before") as c:
                nll = {"forget": {"before": mean_nll(model, data.forget)}}
                if data.retain is not None:
                    nll["retain"] = {"before": mean_nll(model, data.retain)}
            cost["eval_before"] = c.to_dict()
        with track("unlearn") as c:
            ctx = RunContext(seed=seed, device=dev, progress=progress and world.main, checkpoint_dir=checkpoint_dir,
                             checkpoint_every=checkpoint_every, resume=resume)
            result = unlearner.unlearn(model, data, ctx)
        cost["unlearn"] = c.to_dict()
        model = result.model if isinstance(result.model, nn.Module) else model
        if evaluate:
            with track("eval_after") as c:
                nll["forget"]["after"] = mean_nll(model, data.forget)
                if data.retain is not None:
                    nll["retain"]["after"] = mean_nll(model, data.retain)
            cost["eval_after"] = c.to_dict()
        if world.sharded:  # the whole model, gathered from the shards, in a fresh copy on rank 0
            with track("gather") as c:
                model = _gathered(model, model_dir, trust_remote_code, lora, seed, full_state_dict(model, world),
                                  world.main)
            cost["gather"] = c.to_dict()
        if not world.main:  # other ranks: same results, nothing written (rank 0 saves once everyone is here)
            barrier(world)
            return FilesResult(model, tok, {"nll": nll, "logs": result.logs, "info": result.info}, None)
        hashes = {"model_before": hash_before}
        if lora_doc is not None:
            from obliviate.io import hash_tensors

            hashes["adapter"] = hash_tensors(sorted((k, v) for k, v in model.state_dict().items() if "lora_" in k))
            lora_doc["merged"] = merge
            lora_doc["saved"] = None if out_dir is None else "merged" if merge else "adapter"
            if merge:
                with track("merge") as c:
                    model = model.merge_and_unload()  # the adapter folded into the weights: a plain HF model
                cost["merge"] = c.to_dict()
        hashes["model_after"] = hash_model(model)
        results: dict[str, Any] = {
            "format": FORMAT,
            "command": "unlearn",
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model_dir": str(model_dir),
            "model_class": type(model).__name__,
            "method": method,
            "family": "lm",
            "params": to_dict(unlearner.config),
            "lora": lora_doc,
            "seed": seed,
            "device": str(dev),
            "data": {"forget": _split_info(data.forget, forget),
                     "retain": None if data.retain is None else _split_info(data.retain, retain),
                     **({"alternate": {**_split_info(data.extra["alternate"], forget), "answers": alt_source}}
                        if "alternate" in data.extra else {}),
                     "forget_rows_in_retain": overlap(data),
                     "template": None if chat_template else template, "chat_template": chat_template,
                     "max_length": max_length, "pad_token_id": pad_id_of(tok)},
            "nll": nll,
            "logs": result.logs,
            "info": result.info,
            "stopped_at": result.stopped_at,
            "git_sha": git_sha(),
            "git_dirty": git_dirty(),
            "versions": package_versions(),
            "hashes": hashes,
        }
        path = None
        if out_dir is not None:
            path = out_dir / "model"
            meta = {"format": FORMAT, "method": method, "params": results["params"], "seed": seed,
                    "source_model": str(model_dir), "model_before": hash_before}
            if lora_doc is not None:
                meta["lora"] = {**lora.to_dict(), "saved": lora_doc["saved"]}
            with track("save") as c:
                if lora_doc is not None and not merge:
                    from obliviate.lora import save_lora

                    save_lora(model, path, merge=False, overwrite=True, extra=meta, extra_files=tokenizer_files(tok))
                else:
                    save_pretrained_atomic(model, path, extra=meta, overwrite=True, extra_files=tokenizer_files(tok))
            cost["save"] = c.to_dict()
            results["model_path"] = str(path)
    t = total.to_dict()
    results["cost"] = {"wall_s": t["wall_s"], "peak_rss_mb": t["peak_rss_mb"], "cuda_peak_mb": t["cuda_peak_mb"],
                       "phases": cost}
    if out_dir is not None:
        write_json(out_dir / RESULTS, results)
    barrier(world)
    return FilesResult(model, tok, results, path)


def _gathered(sharded: nn.Module, model_dir: Any, trust_remote_code: bool, lora: Any, seed: int,
              state: dict[str, Any], main: bool) -> nn.Module:
    """Rank 0: a fresh CPU copy of the model (with the same LoRA adapter, if any) holding the gathered ``state``;
    other ranks keep their sharded model. Only weights tied to a loaded one may be missing from ``state``."""
    if not main:
        return sharded
    model, _ = load_model_and_tokenizer(model_dir, "cpu", trust_remote_code)
    if lora is not None:
        from obliviate.lora import attach_lora

        model = attach_lora(model, lora, seed=seed)
    missing, unexpected = model.load_state_dict(state, strict=False)
    params = model.state_dict()
    loaded = {params[k].data_ptr() for k in state if k in params}
    untied = [k for k in missing if params[k].data_ptr() not in loaded]
    if unexpected or untied:
        raise ObliviateError(f"the gathered weights do not fit a fresh {type(model).__name__}: missing "
                             f"{untied[:3]}, unexpected {list(unexpected)[:3]}")
    return model


def _alternates_plan(method: str, cls: type, forget: Any, idk: Any) -> tuple[Any, str | None]:
    """(the ``idk`` pool to use or None, where the alternates come from or None), checked before the model loads."""
    from obliviate.data.lm_alternates import alternate_texts

    if not getattr(cls, "needs_alternate", False):
        if idk is not None and idk is not False:
            raise ObliviateError(f"--idk (idk=...) gives idk_dpo its \"I don't know\" answers; method {method!r} "
                                 "takes none")
        return None, None
    if getattr(cls, "idk_alternates", False):
        pool = True if idk is None or idk is True else idk
        where = "built-in pool" if pool is True else str(pool) if isinstance(pool, (str, Path)) else "given list"
        return pool, f"\"I don't know\" answers ({where})"
    if idk is not None and idk is not False:
        raise ObliviateError(f"--idk (idk=...) is for idk_dpo; {method!r} takes the alternates in the forget records")
    if alternate_texts(forget) is None:
        raise ObliviateError(f"method {method!r} needs an alternate answer in every forget record (key 'alternate'): "
                             "make them with `obliviate alternates --model DIR --forget F --out alt.jsonl` and pass "
                             "--forget alt.jsonl")
    return None, "the forget records' 'alternate' key"


def _check_lora(method: str, cls: type, lora: Any) -> LoraConfig:
    """LoRA needs PEFT and a method that trains what requires grad (the adapter); checked before loading.
    ``lora`` may also be ``True`` (the defaults) or a dict of LoraConfig fields."""
    import dataclasses

    from obliviate.errors import unknown_name_error
    from obliviate.lora import require_peft

    if lora is True:
        lora = LoraConfig()
    elif isinstance(lora, dict):
        fields = [f.name for f in dataclasses.fields(LoraConfig)]
        for key in lora:
            if key not in fields:
                raise unknown_name_error("lora field", str(key), fields)
        lora = LoraConfig(**lora)
    if not isinstance(lora, LoraConfig):
        raise ObliviateError(f"lora must be an obliviate.lora.LoraConfig, got {type(lora).__name__}")
    if not getattr(cls, "lora_compatible", True):
        raise ObliviateError(f"method {method!r} cannot run with LoRA: it edits the base weights directly (supermasks "
                             "baked into the MLP weights), not through an adapter; drop --lora or pick another method")
    require_peft()
    return lora


# --- the CLI path: `obliviate unlearn --model DIR --forget F ...` ------------------------------------------------
