"""General ability after unlearning with EleutherAI's lm-evaluation-harness (``lm-eval``), run in process.

``run_lm_eval`` evaluates an in-memory Hugging Face causal LM and its tokenizer (for instance a model just edited by
an unlearning method, never saved) on any lm-eval task: it wraps the model in lm-eval's ``HFLM``, indexes the tasks
(the built-in ones and those defined under ``include_path``), runs ``lm_eval.simple_evaluate`` with every seed set to
``seed`` and returns a compact, JSON-ready summary. The model is put in eval mode for the run (dropout off) and its
train/eval mode, device and the caller's ``random``/``numpy``/``torch`` RNG states are restored afterwards.

``local_choice_task`` defines a multiple-choice task from local rows (a JSONL file plus a task YAML), so a task needs
no download at all; pass its directory as ``include_path``.

Install: ``pip install 'obliviate[harness]'`` (pins the lm-eval version this module is tested with).

Offline use: before importing lm-eval, ``run_lm_eval`` sets ``HF_DATASETS_OFFLINE=1`` and ``HF_HUB_OFFLINE=1``
where they are not already set, so no run ever reaches the network. ``datasets`` and ``huggingface_hub`` read these
variables once, when first imported, so set them yourself (``0`` to allow downloads, ``1`` to forbid them) before
anything imports those packages if you want a different choice. A built-in lm-eval task whose YAML names a Hub data
set (``dataset_path: allenai/ai2_arc``, ...) then only runs when that data set is already in the local Hugging Face
cache (run it once online, or copy ``~/.cache/huggingface``), or when you copy its YAML and point ``dataset_path`` /
``dataset_kwargs`` at local files, as ``local_choice_task`` does.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from obliviate.errors import ObliviateError, closest

INSTALL_HINT = "pip install 'obliviate[harness]'"
OFFLINE_ENV = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


# ----------------------------------------------------------------------------------------------------- lm-eval import
def set_offline_defaults() -> None:
    """``HF_DATASETS_OFFLINE=1`` and ``HF_HUB_OFFLINE=1`` unless the user already set them (to anything)."""
    for key in OFFLINE_ENV:
        os.environ.setdefault(key, "1")


def import_lm_eval() -> Any:
    """The ``lm_eval`` package (offline defaults set first), or an ObliviateError with the install command."""
    set_offline_defaults()
    try:
        import lm_eval
        import lm_eval.models.huggingface
        import lm_eval.tasks
    except ImportError as e:
        raise ObliviateError(f"lm-eval is not installed ({e}); install the harness extra: {INSTALL_HINT}") from e
    return lm_eval


def lm_eval_version() -> str:
    """The installed lm-eval distribution version."""
    from importlib.metadata import version

    return version("lm_eval")


# ------------------------------------------------------------------------------------------------- argument checks
def is_int_at_least(value: Any, low: int) -> bool:
    """An int (not a bool) >= ``low``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_run_args(tasks: Sequence[str], limit: float | None, batch_size: int, num_fewshot: int | None) -> list[str]:
    """The task names as a list; ObliviateError for an empty/invalid task list or an out-of-range number."""
    if isinstance(tasks, str) or not all(isinstance(t, str) and t for t in tasks) or not tasks:
        raise ObliviateError(f"tasks must be a non-empty sequence of task names, got {tasks!r}")
    if not is_int_at_least(batch_size, 1):
        raise ObliviateError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if num_fewshot is not None and not is_int_at_least(num_fewshot, 0):
        raise ObliviateError(f"num_fewshot must be None or an integer >= 0, got {num_fewshot!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0):
        raise ObliviateError(f"limit must be None, an item count >= 1 or a fraction in (0, 1), got {limit!r}")
    return list(dict.fromkeys(tasks))


def check_include_path(include_path: str | Path | None) -> str | None:
    """``include_path`` as an absolute directory string; ObliviateError when it is not an existing directory."""
    if include_path is None:
        return None
    path = Path(include_path).expanduser().resolve()
    if not path.is_dir():
        raise ObliviateError(f"include_path {str(include_path)!r} is not a directory (a folder of lm-eval task YAMLs)")
    return str(path)


# ------------------------------------------------------------------------------------------------------ task lookup
def build_task_manager(names: Sequence[str], include_path: str | None) -> Any:
    """lm-eval's TaskManager for ``names``. Indexing the ~15k built-in tasks takes seconds, so when every name is a
    task defined under ``include_path`` only that folder is indexed; otherwise the built-ins are indexed too."""
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        local = TaskManager(include_path=include_path, include_defaults=False)
        if all(name in local.all_subtasks for name in names):
            return local
    return TaskManager(include_path=include_path)


def is_known_task(name: str, manager: Any) -> bool:
    """A registered task/group/tag name, or the path of a task YAML file."""
    return name in manager.all_tasks or (Path(name).suffix in (".yaml", ".yml") and Path(name).is_file())


def check_task_names(names: Sequence[str], manager: Any, include_path: str | None) -> None:
    """ObliviateError naming every unknown task, with did-you-mean hints and how to list or define tasks."""
    unknown = [name for name in names if not is_known_task(name, manager)]
    if not unknown:
        return
    hints = [f"{name!r} (did you mean {', '.join(map(repr, near))}?)" if (near := closest(name, manager.all_tasks))
             else repr(name) for name in unknown]
    where = f"the built-in tasks and {include_path}" if include_path else "the built-in tasks (no include_path given)"
    raise ObliviateError(
        f"unknown lm-eval task(s) {', '.join(hints)} in {where}; list the valid names with `lm-eval ls tasks "
        f"[--include_path DIR]`, or define a task from local files with local_choice_task(directory, name, rows) "
        f"(or any lm-eval task YAML) and pass its directory as include_path")


# ----------------------------------------------------------------------------------------------------- model state
@contextmanager
def eval_mode(model: nn.Module, device: str | None) -> Iterator[None]:
    """Eval mode (and ``device``, when given) for the block; mode and device restored afterwards."""
    was_training = model.training
    home = next(model.parameters()).device
    try:
        if device is not None:
            model.to(torch.device(device))
        model.eval()
        yield
    finally:
        if device is not None:
            model.to(home)
        model.train(was_training)


@contextmanager
def preserved_rng() -> Iterator[None]:
    """The caller's ``random``, ``numpy`` and ``torch`` (CPU and CUDA) RNG states, restored after the block."""
    py_state, np_state = random.getstate(), np.random.get_state()
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


# ------------------------------------------------------------------------------------------------ result summary
def json_value(value: Any) -> Any:
    """A plain JSON value: numpy scalars to Python numbers, NaN/inf and lm-eval's "N/A" to None."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return None if value == "N/A" else value
    return str(value)


def metric_key(key: str) -> str:
    """lm-eval's ``metric,filter`` key as ``metric`` for the default filter ("none"), else unchanged."""
    metric, _, filter_name = key.partition(",")
    return metric if filter_name == "none" else key


def compact_metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    """One task's results row without its display alias, with short metric keys and JSON values."""
    return {metric_key(k): json_value(v) for k, v in row.items() if k not in ("alias", "name", "sample_len")}


def compact_results(raw: Mapping[str, Any], limit: float | None, num_fewshot: int | None) -> dict[str, Any]:
    """The JSON-ready summary of ``simple_evaluate``'s output (see ``run_lm_eval``)."""
    groups = set(raw.get("groups", {}))
    out = {
        "tasks": {name: compact_metrics(row) for name, row in raw["results"].items() if name not in groups},
        "groups": {name: compact_metrics(row) for name, row in raw.get("groups", {}).items()},
        "versions": {name: json_value(v) for name, v in raw.get("versions", {}).items()},
        "n_samples": {name: {k: json_value(v) for k, v in counts.items()}
                      for name, counts in raw.get("n-samples", {}).items()},
        "n_shot": {name: json_value(v) for name, v in raw.get("n-shot", {}).items()},
        "lm_eval_version": lm_eval_version(),
        "limit": json_value(limit),
        "num_fewshot": num_fewshot,
    }
    json.dumps(out, allow_nan=False)  # a guard: the summary must be strict JSON
    return out


# ------------------------------------------------------------------------------------------------------------ run
def run_lm_eval(model: nn.Module, tokenizer: Any, tasks: Sequence[str], *, include_path: str | Path | None = None,
                limit: float | None = None, batch_size: int = 8, num_fewshot: int | None = None, seed: int = 0,
                device: str | None = None) -> dict[str, Any]:
    """Run lm-eval ``tasks`` in process on an in-memory Hugging Face causal LM and its tokenizer.

    ``tasks``: lm-eval task, group or tag names (``lm-eval ls tasks``), or paths of task YAML files; tasks defined
    under ``include_path`` (a folder of task YAMLs, e.g. one written by ``local_choice_task``) are found too.
    ``limit``: at most this many items per task (a fraction of each task when < 1). ``num_fewshot``: override the
    tasks' few-shot count (None: the task's own, 0 when it sets none). ``seed``: Python, numpy, torch and few-shot
    sampling seeds. ``device``: run on this device (the model is moved there and back); None: where the model is.
    lm-eval's ``HFLM`` calls ``model.tie_weights()``: a head untied in memory while the config still says
    ``tie_word_embeddings`` is re-tied, as saving and reloading the model would also do.

    Returns ``{"tasks": {task: {metric: value}}, "groups": {group: {metric: value}}, "versions": {task: version},
    "n_samples": {task: {"original": n, "effective": n}}, "n_shot": {task: k}, "lm_eval_version": str,
    "limit": ..., "num_fewshot": ...}``; metric keys are lm-eval's (``acc``, ``acc_stderr``, ``acc_norm``, ...) with
    the filter appended (``exact_match,strict-match``) unless it is the default one; missing values are None.
    """
    lm_eval = import_lm_eval()
    from lm_eval.models.huggingface import HFLM

    names = check_run_args(tasks, limit, batch_size, num_fewshot)
    path = check_include_path(include_path)
    manager = build_task_manager(names, path)
    check_task_names(names, manager, path)
    with preserved_rng(), eval_mode(model, device):
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        try:
            raw = lm_eval.simple_evaluate(model=lm, tasks=names, num_fewshot=num_fewshot, limit=limit,
                                          task_manager=manager, log_samples=False, random_seed=seed,
                                          numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed)
        except ConnectionError as e:
            raise ObliviateError(offline_hint(names, e)) from e
    return compact_results(raw, limit, num_fewshot)


def offline_hint(names: Sequence[str], error: Exception) -> str:
    """The message for a task whose data set is neither local nor reachable."""
    flags = ", ".join(f"{key}={os.environ.get(key, '')}" for key in OFFLINE_ENV)
    return (f"lm-eval could not load the data of task(s) {', '.join(names)} ({error}; {flags}): put the data set in "
            f"the local Hugging Face cache (run once online with HF_DATASETS_OFFLINE=0 HF_HUB_OFFLINE=0 set before "
            f"import) or define the task from local files (local_choice_task, or a task YAML with dataset_path: json)")


# ------------------------------------------------------------------------------------------------ local task files
def check_choice_row(i: int, row: Mapping[str, Any]) -> dict[str, Any]:
    """One ``{"question": str, "choices": [str, ...], "answer": int}`` row, checked; ObliviateError otherwise."""
    if not isinstance(row, Mapping):
        raise ObliviateError(f"row {i} must be a mapping with question, choices and answer, got {row!r}")
    question, choices, answer = row.get("question"), row.get("choices"), row.get("answer")
    if not isinstance(question, str) or not question:
        raise ObliviateError(f"row {i}: question must be a non-empty string, got {question!r}")
    if (isinstance(choices, str) or not isinstance(choices, Sequence) or len(choices) < 2
            or not all(isinstance(c, str) and c for c in choices)):
        raise ObliviateError(f"row {i}: choices must be a list of >= 2 non-empty strings, got {choices!r}")
    if not is_int_at_least(answer, 0) or answer >= len(choices):
        raise ObliviateError(f"row {i}: answer must be the index of the correct choice, 0..{len(choices) - 1}, "
                             f"got {answer!r}")
    return {"question": question, "choices": list(choices), "answer": answer}


def choice_task_config(name: str, data_file: Path, cache_dir: Path) -> dict[str, Any]:
    """The lm-eval task config of a local multiple-choice task (see ``local_choice_task``)."""
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}, "cache_dir": str(cache_dir)},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{question}}",
        "doc_to_choice": "choices",
        "doc_to_target": "answer",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }


def local_choice_task(directory: str | Path, name: str, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Define the multiple-choice lm-eval task ``name`` from ``rows``; returns the YAML path. Run it with
    ``run_lm_eval(model, tok, [name], include_path=directory)`` (or ``lm-eval run --include_path directory``).

    ``rows``: ``{"question": prompt, "choices": [str, ...], "answer": index of the correct choice}``. Each choice is
    scored as the continuation ``" " + choice`` of the prompt (lm-eval's default target delimiter) and ``acc`` is the
    share of rows whose correct choice has the highest log-likelihood. Writes ``directory/name.jsonl`` (the rows) and
    ``directory/name.yaml``::

        task: <name>
        dataset_path: json                      # the datasets JSON builder: no download
        dataset_kwargs:
          data_files: {test: <abs path of name.jsonl>}
          cache_dir: <abs path of directory>/.hf_datasets_cache   # not the global HF cache
        test_split: test
        output_type: multiple_choice
        doc_to_text: '{{question}}'
        doc_to_choice: choices                  # a field of each row
        doc_to_target: answer
        metric_list: [{metric: acc, aggregation: mean, higher_is_better: true}]
        metadata: {version: 1.0}
    """
    if not isinstance(name, str) or not TASK_NAME.match(name):
        raise ObliviateError(f"task name {name!r} must start with a letter or digit and use only letters, digits, "
                             f"'_', '-' and '.'")
    if isinstance(rows, (str, Mapping)) or not rows:
        raise ObliviateError(f"rows must be a non-empty sequence of question/choices/answer mappings, got {rows!r}")
    checked = [check_choice_row(i, row) for i, row in enumerate(rows)]
    folder = Path(directory).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    data_file, yaml_file = folder / f"{name}.jsonl", folder / f"{name}.yaml"
    data_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in checked), encoding="utf-8")
    config = choice_task_config(name, data_file, folder / ".hf_datasets_cache")
    yaml_file.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return yaml_file
