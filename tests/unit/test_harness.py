"""lm-eval in process (obliviate.metrics.harness) on a tiny GPT-2 and a local multiple-choice task, fully offline."""

from __future__ import annotations

import itertools
import json
import sys

import pytest
import torch

pytest.importorskip("lm_eval")

from obliviate.errors import ObliviateError
from obliviate.metrics.harness import local_choice_task, run_lm_eval
from tests.conftest import build_tiny_gpt2, build_tiny_tokenizer

TASK = "obliviate_tiny_choice"
CHOICES = ["mat", "dog", "red tree", "paris", "the big house", "cat", "blue river", "city"]
PROMPTS = ["the cat sat on the", "who wrote this", "the capital of france is", "a small dog ran",
           "the red tree is", "question answer", "the big city", "a blue mat"]


def choice_logliks(model: torch.nn.Module, tok, question: str, choices: list[str]) -> list[float]:
    """Sum log p(" " + choice | question) for each choice, split the way lm-eval splits a causal LM's request:
    tokenize context + continuation as one string and score the tokens after the context's own tokens."""
    context = tok.encode(question)
    out = []
    for choice in choices:
        whole = tok.encode(question + " " + choice)
        assert whole[: len(context)] == context
        with torch.no_grad():
            logp = model(input_ids=torch.tensor([whole])).logits[0].double().log_softmax(-1)
        out.append(sum(float(logp[pos - 1, whole[pos]]) for pos in range(len(context), len(whole))))
    return out


def build_rows(model: torch.nn.Module, tok) -> tuple[list[dict], list[bool]]:
    """8 rows of 4 choices; the answer is the model's own best choice in rows 0-4 and its worst in rows 5-7, so the
    expected accuracy is 5/8 and any difference in scoring shows. Returns the rows and the hand-computed hits."""
    rows, hits = [], []
    for i, question in enumerate(PROMPTS):
        choices = [CHOICES[(i + k) % len(CHOICES)] for k in range(0, 8, 2)]
        ll = choice_logliks(model, tok, question, choices)
        order = sorted(range(len(ll)), key=ll.__getitem__)
        assert min(ll[b] - ll[a] for a, b in itertools.pairwise(order)) > 1e-4  # no near-ties: argmax is well defined
        answer = order[-1] if i < 5 else order[0]
        rows.append({"question": question, "choices": choices, "answer": answer})
        hits.append(max(range(len(ll)), key=ll.__getitem__) == answer)
    return rows, hits


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny model (left in train mode), its tokenizer, the task folder, the hand-computed hits, a first run."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        torch.set_num_threads(2)
        tok = build_tiny_tokenizer()
        model = build_tiny_gpt2(len(tok), tok.eos_token_id).eval()
        rows, hits = build_rows(model, tok)
        folder = tmp_path_factory.mktemp("lm-eval-tasks")
        local_choice_task(folder, TASK, rows)
        model.train()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        torch.manual_seed(123)
        expected_draw = torch.rand(3)
        torch.manual_seed(123)
        result = run_lm_eval(model, tok, [TASK], include_path=folder, batch_size=3)
        draw_after = torch.rand(3)
        yield {"tok": tok, "model": model, "folder": folder, "hits": hits, "result": result, "before": before,
               "rng_kept": torch.equal(expected_draw, draw_after)}


def test_accuracy_matches_hand_computed_logliks(setup):
    result = setup["result"]
    assert result["n_samples"][TASK] == {"original": 8, "effective": 8}
    assert result["tasks"][TASK]["acc"] == pytest.approx(sum(setup["hits"]) / 8, abs=1e-12)
    assert result["tasks"][TASK]["acc"] == pytest.approx(5 / 8)
    assert result["versions"][TASK] == 1.0
    assert result["limit"] is None and result["num_fewshot"] is None and result["n_shot"][TASK] == 0


def test_result_is_strict_json(setup):
    text = json.dumps(setup["result"], allow_nan=False)
    assert json.loads(text) == setup["result"]
    assert isinstance(setup["result"]["lm_eval_version"], str)


def test_model_mode_weights_and_rng_restored(setup):
    model = setup["model"]
    assert model.training
    assert all(torch.equal(v, setup["before"][k]) for k, v in model.state_dict().items())
    assert setup["rng_kept"]


def test_deterministic_and_limit(setup):
    again = run_lm_eval(setup["model"], setup["tok"], [TASK], include_path=setup["folder"], batch_size=3)
    assert again == setup["result"]
    part = run_lm_eval(setup["model"], setup["tok"], [TASK], include_path=setup["folder"], limit=3, batch_size=8)
    assert part["n_samples"][TASK] == {"original": 8, "effective": 3}
    assert part["tasks"][TASK]["acc"] == pytest.approx(sum(setup["hits"][:3]) / 3)
    assert part["limit"] == 3


def test_unknown_task_is_a_clear_error(setup):
    hint = r"obliviate_tiny_choise.*did you mean 'obliviate_tiny_choice'.*lm-eval ls"
    with pytest.raises(ObliviateError, match=hint):
        run_lm_eval(setup["model"], setup["tok"], ["obliviate_tiny_choise"], include_path=setup["folder"])
    assert setup["model"].training


@pytest.mark.parametrize("kwargs, match", [({"tasks": []}, "non-empty"), ({"batch_size": 0}, "batch_size"),
                                            ({"limit": 0}, "limit"), ({"num_fewshot": -1}, "num_fewshot"),
                                            ({"include_path": "/no/such/dir"}, "include_path")])
def test_bad_arguments(setup, kwargs, match):
    args = {"tasks": [TASK], "include_path": setup["folder"]} | kwargs
    with pytest.raises(ObliviateError, match=match):
        run_lm_eval(setup["model"], setup["tok"], **args)


def test_local_choice_task_validates_rows(tmp_path):
    good = {"question": "q", "choices": ["a", "b"], "answer": 1}
    with pytest.raises(ObliviateError, match="answer"):
        local_choice_task(tmp_path, "t", [good | {"answer": 2}])
    with pytest.raises(ObliviateError, match="choices"):
        local_choice_task(tmp_path, "t", [good | {"choices": ["a"]}])
    with pytest.raises(ObliviateError, match="task name"):
        local_choice_task(tmp_path, "bad name", [good])
    path = local_choice_task(tmp_path, "t", [good])
    assert path.name == "t.yaml" and (tmp_path / "t.jsonl").read_text().count("\n") == 1


def test_missing_lm_eval_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    with pytest.raises(ObliviateError, match=r"obliviate\[harness\]"):
        run_lm_eval(torch.nn.Linear(1, 1), None, ["x"])


def test_cli_runs_a_local_task_on_a_saved_model(setup, tmp_path, capsys):
    import json

    from obliviate.cli import main

    model_dir = tmp_path / "model"
    setup["model"].save_pretrained(model_dir)
    setup["tok"].save_pretrained(model_dir)
    out = tmp_path / "harness.json"
    args = ["harness", "--model", str(model_dir), "--tasks", TASK, "--include-path", str(setup["folder"]),
            "--batch-size", "3", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    res = json.loads(out.read_text())
    assert res["tasks"][TASK]["acc"] == pytest.approx(5 / 8) and res["model"] == str(model_dir)
    assert main(args) != 0 and "--overwrite" in capsys.readouterr().err  # no silent overwrite
