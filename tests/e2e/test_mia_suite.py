"""``obliviate eval --suite mia`` on your own model and files: every attack's AUC, the per-item scores kept, a model
fine-tuned on the forget file exposed by the attacks, and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from obliviate.cli import main
from obliviate.metrics.mia import membership_auc

WORDS = ["the", "cat", "dog", "sat", "on", "a", "mat", "red", "blue", "green", "river", "city", "small", "big", "tree",
         "house", "ran", "fast", "slow"]


def _qa(n: int, seed: int) -> list[dict[str, str]]:
    g = torch.Generator().manual_seed(seed)

    def pick(k: int) -> str:
        return " ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (k,), generator=g))

    return [{"question": pick(4), "answer": pick(6)} for _ in range(n)]


@pytest.fixture(scope="module")
def memorised(tmp_path_factory, tiny_hf_lm):
    """The tiny HF model fine-tuned on forget.jsonl until it knows it; holdout.jsonl never seen."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from obliviate.data.lm_files import qa_rows

    d = tmp_path_factory.mktemp("mia")
    forget, holdout = _qa(12, 0), _qa(12, 1)
    for name, rows in (("forget", forget), ("holdout", holdout)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = AutoTokenizer.from_pretrained(tiny_hf_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_hf_lm)
    seqs, _ = qa_rows(forget, tok)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(40):
        for s in seqs:
            ids = torch.tensor([s])
            loss = model(input_ids=ids, labels=ids).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.save_pretrained(d / "model")
    tok.save_pretrained(d / "model")
    return d


def test_every_attack_exposes_the_memorised_file_and_keeps_per_item_scores(memorised):
    d = memorised
    out = d / "eval"
    assert main(["eval", "--suite", "mia", "--model", str(d / "model"), "--set", f"data.forget={d / 'forget.jsonl'}",
                 "--set", f"data.holdout={d / 'holdout.jsonl'}", "--set", "eval.attacks=[loss,zlib,min_k,min_k_pp]",
                 "--out", str(out)]) == 0
    res = json.loads((out / "eval.json").read_text())
    for attack in ("loss", "zlib", "min_k", "min_k_pp"):
        rec = res["metrics"]["attacks"][attack]
        assert len(rec["scores"]["forget"]) == len(rec["scores"]["holdout"]) == 12
        auc, _ = membership_auc(rec["scores"]["forget"], rec["scores"]["holdout"], "muse", ("forget", "holdout"))
        assert res["scalars"][f"auc_{attack}"] == pytest.approx(auc, abs=1e-12)
    assert res["scalars"]["auc_loss"] < 0.2 and res["scalars"]["auc_min_k"] < 0.3  # MUSE: memorised -> AUC ~0


@pytest.mark.parametrize("sets, match", [([], "data.forget"), (["eval.attacks=[loss,lira]"], "lira"),
                                         (["eval.attacks=[reference]"], "reference_model"),
                                         (["eval.convention=sklearn"], "convention")])
def test_bad_input_is_a_clear_error(memorised, capsys, sets, match):
    d = memorised
    files = [] if not sets else ["--set", f"data.forget={d / 'forget.jsonl'}", "--set",
                                 f"data.holdout={d / 'holdout.jsonl'}"]
    args = ["eval", "--suite", "mia", "--model", str(d / "model"), *files]
    for s in sets:
        args += ["--set", s]
    assert main([*args, "--out", str(d / "bad"), "--overwrite"]) != 0
    assert match in capsys.readouterr().err


def test_train_is_refused(tmp_path, capsys):
    assert main(["train", "--suite", "mia", "--out", str(tmp_path / "x"), "--quiet"]) != 0
    assert "obliviate eval --suite mia --model DIR" in capsys.readouterr().err
