"""End to end: `obliviate alternates` samples AltPO's alternates with the model to be unlearned, `obliviate unlearn
--method altpo` trains on them, `--method idk_dpo` builds its "I don't know" winners itself (or from --idk FILE)."""

from __future__ import annotations

import json

import pytest

from obliviate.cli import main

FORGET = [{"question": f"who wrote the {c} book", "answer": f"the {a} cat wrote the {c} book"}
          for c, a in [("red", "small"), ("blue", "big"), ("green", "slow")]]
RETAIN = [{"question": f"is the {c} {n} big", "answer": f"the {c} {n} is {s}"}
          for c in ("red", "blue") for n, s in (("house", "small"), ("tree", "big"))]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    (d / "f.jsonl").write_text("".join(json.dumps(x) + "\n" for x in FORGET))
    (d / "r.jsonl").write_text("".join(json.dumps(x) + "\n" for x in RETAIN))
    return d


def _unlearn(tiny_hf_lm, files, forget, method, out, *extra):
    return main(["unlearn", "--model", str(tiny_hf_lm), "--forget", str(forget), "--retain", str(files / "r.jsonl"),
                 "--method", method, "--set", "method.epochs=2", "--set", "method.lr=1e-2", "--out", str(out),
                 "--quiet", *extra])


def test_alternates_then_altpo(tiny_hf_lm, files, tmp_path, capsys):
    alt = tmp_path / "alt.jsonl"
    argv = ["alternates", "--model", str(tiny_hf_lm), "--forget", str(files / "f.jsonl"), "--out", str(alt),
            "--repeats", "2", "--max-new-tokens", "8", "--instruction", "Q: {question}\\nA: {answer}\\nOther:",
            "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    io = capsys.readouterr()
    assert f"alternates: {alt}" in io.out and "for 3 questions" in io.err
    rows = [json.loads(x) for x in alt.read_text().splitlines()]
    assert 0 < len(rows) <= 6 and all(set(r) == {"question", "answer", "alternate"} for r in rows)
    assert main(argv) == 2 and "already exists; pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--seed", "1"]) == 0
    capsys.readouterr()

    out = tmp_path / "altpo"
    assert _unlearn(tiny_hf_lm, files, alt, "altpo", out) == 0
    res = json.loads((out / "results.json").read_text())
    rows = alt.read_text().splitlines()
    assert res["data"]["forget"]["rows"] == res["data"]["alternate"]["rows"] == len(rows)
    assert res["data"]["alternate"]["answers"] == "the forget records' 'alternate' key"
    assert res["params"]["beta"] == 0.1 and {"dpo", "reward_margin", "retain_nll"} <= set(res["logs"][-1])
    assert res["nll"]["forget"]["after"] > res["nll"]["forget"]["before"]


def test_idk_dpo_builds_its_winners(tiny_hf_lm, files, tmp_path):
    out = tmp_path / "idk"
    assert _unlearn(tiny_hf_lm, files, files / "f.jsonl", "idk_dpo", out) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["data"]["alternate"]["rows"] == 3 and "built-in pool" in res["data"]["alternate"]["answers"]
    assert res["nll"]["forget"]["after"] > res["nll"]["forget"]["before"]
    pool = tmp_path / "pool.txt"
    pool.write_text("no idea\nnot sure\n")
    assert _unlearn(tiny_hf_lm, files, files / "f.jsonl", "idk_dpo", tmp_path / "own", "--idk", str(pool)) == 0
    own = json.loads((tmp_path / "own" / "results.json").read_text())["data"]["alternate"]
    assert str(pool) in own["answers"] and own["hash"] != res["data"]["alternate"]["hash"]


@pytest.mark.parametrize("method, extra, match", [
    ("altpo", [], ("needs an alternate answer in every forget record (key 'alternate'): make them with "
                   "`obliviate alternates")),
    ("grad_diff", ["--idk", "x.txt"], "method 'grad_diff' takes none"),
    ("altpo", ["--idk", "x.txt"], "--idk (idk=...) is for idk_dpo"),
    ("idk_dpo", ["--idk", "missing.txt"], "missing.txt' does not exist"),
])
def test_bad_input_is_a_one_line_error(tiny_hf_lm, files, tmp_path, capsys, method, extra, match):
    assert _unlearn(tiny_hf_lm, files, files / "f.jsonl", method, tmp_path / "o", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1


def test_idk_needs_forget(tmp_path, capsys):
    assert main(["unlearn", "--model", str(tmp_path), "--method", "idk_dpo", "--idk", "x.txt"]) == 2
    assert "--idk need(s) --forget" in capsys.readouterr().err
