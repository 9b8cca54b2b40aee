"""TinyMem's train-time regularizers (spectral norm, loss truncation, example-tied dropout) and fine-tuning methods:
the regularizers' math by hand, the pre-training loop unchanged without one, and each method's effect on a tiny
memorizing TinyMem setup."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from obliviate.context import RunContext
from obliviate.data.tinymem import PAD, TinyMemDataConfig, generate
from obliviate.errors import ObliviateError
from obliviate.families.lm import LMUnlearnData, TokenData, batch_of, drop_trailing_token_columns
from obliviate.io import hash_model
from obliviate.losses.nll import mean_nll
from obliviate.methods import build_method
from obliviate.methods.tinymem.common import TrainTimeMethod
from obliviate.models.gpt2 import TinyMemModelConfig, build_model
from obliviate.train.batching import epoch_permutation
from obliviate.train.pretrain import PretrainedLMData, PretrainRecipe, TrainConfig, checkpoints, pretrain
from obliviate.train.regularizers import (
    ExampleTiedDropout,
    RegularizerConfig,
    SpectralNorm,
    content_ids,
    example_masks,
    power_iteration,
    truncated_loss,
    truncation_mask,
)

TINY = TinyMemModelConfig(n_layer=1, n_embd=32, n_head=2)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # the machine is shared; the conftest's 2 threads are set before this runs
    yield


def _trim(b):
    return drop_trailing_token_columns(b, PAD, keep=1)


# --- the regularizers' math -------------------------------------------------------------------------------------


def test_truncation_drops_exactly_the_top_loss_fraction():
    per = torch.tensor([0.5, 3.0, 1.0, 9.0, 2.0, 0.1, 4.0, 0.7, 1.5, 0.2])
    mask = truncation_mask(per, 0.2)  # round(0.2 * 10) = 2 dropped: the losses 9.0 and 4.0
    assert mask.tolist() == [1, 1, 1, 0, 1, 1, 0, 1, 1, 1]
    kept = per.sum() - 9.0 - 4.0
    assert truncated_loss(per, 0.2).item() == pytest.approx(kept.item() / 10)  # dropped rows count as 0 (reference)
    assert truncation_mask(per, 0.0).tolist() == [1.0] * 10
    # the paper's grid on a batch of 128: 1, 6 and 13 sequences dropped
    big = torch.randperm(128).float()
    for dropc, k in ((0.01, 1), (0.05, 6), (0.1, 13)):
        m = truncation_mask(big, dropc)
        assert int((m == 0).sum()) == k and bool((big[m == 0] >= 128 - k).all())


def test_power_iteration_converges_to_the_spectral_norm_and_its_gradient():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 12, 7, generator=g, requires_grad=True)  # three blocks at once
    u = torch.nn.functional.normalize(torch.randn(3, 12, generator=g), dim=1)
    for _ in range(200):
        sigma, u = power_iteration(w, u)
    expected = torch.linalg.matrix_norm(w.detach(), ord=2)
    torch.testing.assert_close(sigma.detach(), expected, rtol=1e-4, atol=1e-5)
    sigma.sum().backward()  # d sigma / d W = u1 v1^T (the top singular vectors)
    U, _, Vh = torch.linalg.svd(w.detach())
    outer = U[:, :, 0, None] * Vh[:, 0, None, :]
    torch.testing.assert_close(w.grad, outer, atol=1e-4, rtol=1e-3)


def test_spectral_penalty_is_the_sum_over_the_reference_blocks():
    model = build_model(TINY, seed=0)
    reg = SpectralNorm(0.1)
    reg.attach(model, TokenData.from_rows(torch.zeros(2, 4, dtype=torch.long), PAD), seed=0)
    names = [n for n, _ in reg.targets]
    assert names == ["transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.weight",
                     "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight"]  # no wte / wpe / lm_head
    for _ in range(300):
        got = reg.penalty()
    h = model.transformer.h[0]
    blocks = [*h.attn.c_attn.weight.chunk(3 * 2, dim=-1), *h.attn.c_proj.weight.chunk(2, dim=-1),
              h.mlp.c_fc.weight, h.mlp.c_proj.weight]
    want = sum(torch.linalg.matrix_norm(b.detach(), ord=2) for b in blocks)
    assert got.item() == pytest.approx(want.item(), rel=1e-4)


def test_example_tied_dropout_masks():
    ids = torch.tensor([3, 7, 3, 11])
    m = example_masks(ids, width=400, n_fixed=80, p_mem=0.1, seed=0)
    assert bool((m[:, :80] == 1).all())  # generalization neurons: always on
    assert torch.equal(m[0], m[2]) and not torch.equal(m[0], m[1])  # tied to the example, not to the batch slot
    assert abs(m[:, 80:].mean().item() - 0.1) < 0.03
    assert not torch.equal(m, example_masks(ids, 400, 80, 0.1, seed=1))  # the run seed moves them

    model = build_model(TINY, seed=0)  # FFN width 128: 25 generalization neurons at p_fixed 0.2
    rows = TokenData.from_rows(torch.randint(0, 10, (6, 9), generator=torch.Generator().manual_seed(0)), PAD)
    reg = ExampleTiedDropout(0.2, 0.1, tie="row")
    seen = []
    proj = model.transformer.h[0].mlp.c_proj
    reg.attach(model, rows, seed=0)  # its hook runs first; ours records what c_proj then receives
    handle = proj.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    batch = batch_of(rows, torch.tensor([4, 1]))
    model.train()
    reg.loss(model, batch)
    model.eval()
    with torch.no_grad():
        hooked_eval = model(input_ids=rows.input_ids).logits
    handle.remove()
    train_in, eval_in = seen
    masks = example_masks(torch.tensor([4, 1]), 128, 25, 0.1, seed=0)
    for r in range(2):
        off = masks[r] == 0
        assert bool((train_in[r][:, off] == 0).all())  # memorization neurons of other examples: off for this one
        assert bool((train_in[r][:, 25:][:, masks[r][25:] == 1] != 0).any())  # its own: on
    assert bool((eval_in[:, :, 25:] == 0).all()) and bool((eval_in[:, :, :25] != 0).any())  # test: all dropped
    reg.detach(model)  # hooks off, the eval scale baked into c_proj: the same function without hooks
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=rows.input_ids).logits, hooked_eval, atol=1e-5, rtol=1e-5)
    assert not proj._forward_pre_hooks


def test_duplicate_rows_share_their_example():
    ids = torch.tensor([[1, 2], [3, 4], [1, 2], [5, 6], [3, 4]])
    data = TokenData.from_rows(ids, PAD)
    assert content_ids(data).tolist() == [0, 1, 0, 3, 1]


# --- the pre-training loop with and without a regularizer -------------------------------------------------------


def test_no_regularizer_is_the_plain_loop_bit_for_bit(micro_data):
    rows = TokenData.from_rows(micro_data.train[:128], PAD, score_pad=True)
    cfg = TrainConfig(epochs=2, batch_size=32)
    assert cfg.regularizer == RegularizerConfig(name="none")
    a = build_model(TINY, seed=0)
    pretrain(a, rows, cfg, seed=0, progress=False)
    b = build_model(TINY, seed=0)  # the loop as it was before regularizers: AdamW, (seed, epoch) order, mean NLL
    opt = torch.optim.AdamW(b.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
    b.train()
    for epoch in range(cfg.epochs):
        perm = epoch_permutation(len(rows), 0, epoch)
        for s in range(0, len(rows), cfg.batch_size):
            batch = batch_of(rows, perm[s : s + cfg.batch_size])
            opt.zero_grad(set_to_none=True)
            mean_nll(*batch.scored_logits(b)).backward()
            opt.step()
    assert hash_model(a) == hash_model(b)


@pytest.mark.parametrize("reg", [RegularizerConfig(name="spectral_norm", spectral_lambda=0.1),
                                 RegularizerConfig(name="example_tied_dropout"),
                                 RegularizerConfig(name="loss_truncation", dropc=0.1)])
def test_a_regularized_run_resumes_bit_for_bit(tmp_path, micro_data, reg):
    rows = TokenData.from_rows(micro_data.train[:96], PAD, score_pad=True)
    full = TrainConfig(epochs=2, batch_size=32, checkpoint_every=1, regularizer=reg)
    a = build_model(TINY, seed=0)
    pretrain(a, rows, full, seed=0, out_dir=tmp_path / "a", progress=False)
    b = build_model(TINY, seed=0)
    pretrain(b, rows, TrainConfig(epochs=1, batch_size=32, regularizer=reg), seed=0, out_dir=tmp_path / "b",
             progress=False)
    c = build_model(TINY, seed=0)
    assert pretrain(c, rows, full, seed=0, out_dir=tmp_path / "b", progress=False).resumed_from_epoch == 1
    assert hash_model(c) == hash_model(a)
    plain = build_model(TINY, seed=0)
    pretrain(plain, rows, TrainConfig(epochs=2, batch_size=32), seed=0, progress=False)
    assert hash_model(plain) != hash_model(a)  # the regularizer did something
    assert set(a.state_dict()) == set(plain.state_dict())  # and left a plain model
    has_state = (checkpoints(tmp_path / "a")[-1] / "regularizer.safetensors").is_file()
    assert has_state == (reg.name == "spectral_norm")


@pytest.mark.parametrize("make, match", [
    (lambda: RegularizerConfig(dropc=1.0), r"train\.regularizer\.dropc must be in \[0, 1\), got 1\.0"),
    (lambda: RegularizerConfig(spectral_lambda=0.0), r"spectral_lambda must be in \(0, inf\), got 0\.0"),
    (lambda: RegularizerConfig(p_fixed=0.0), r"p_fixed must be in \(0, 1\], got 0\.0"),
    (lambda: RegularizerConfig(p_mem=1.5), r"p_mem must be in \[0, 1\], got 1\.5"),
    (lambda: build_method("spectral_norm", {"spectral_lambda": -1}), r"method\.spectral_lambda .* got -1"),
    (lambda: build_method("loss_truncation", {"dropc": 2}), r"method\.dropc must be in \[0, 1\), got 2"),
    (lambda: build_method("example_tied_dropout", {"p_mem": -0.1}), r"method\.p_mem must be in \[0, 1\], got -0\.1"),
    (lambda: build_method("finetune_clean", {"epochs": 0}), r"method\.epochs must be >= 1 .* got 0"),
    (lambda: build_method("finetune_both", {"lr": 0}), r"method\.lr must be > 0 .* got 0"),
    (lambda: build_method("example_tied_dropout", {"tie": "x"}), r"'x'.*valid: content, row"),
])
def test_bad_values_name_the_value_and_the_valid_range(make, match):
    with pytest.raises(ObliviateError, match=match):
        make()


def test_too_few_generalization_neurons_is_an_error(micro_data):
    rows = TokenData.from_rows(micro_data.train[:8], PAD, score_pad=True)
    cfg = TrainConfig(epochs=1, regularizer=RegularizerConfig(name="example_tied_dropout", p_fixed=0.005))
    with pytest.raises(ObliviateError, match=r"p_fixed=0\.005 keeps no generalization neuron of 128"):
        pretrain(build_model(TINY, seed=0), rows, cfg, seed=0, progress=False)


# --- the methods on a tiny memorizing TinyMem setup --------------------------------------------------------------

P, K = 16, 24  # prompt / continuation of the memorization check (the rows are 12 numbers, not the paper's 20)


def percent_memorized(model, data) -> float:
    """Greedy decoding from the clean prefix reproduces the artifact's next K tokens, computed teacher-forced (all K
    argmax predictions right <=> greedy decoding reproduces them); over artifacts whose window differs from clean."""
    art, clean = data.artifacts, data.artifacts_clean
    x = torch.cat([clean[:, :P], art[:, P:]], 1)[:, : P + K]
    with torch.no_grad():
        pred = model.eval()(input_ids=x).logits.argmax(-1)
    hit = (pred[:, P - 1 : P + K - 1] == art[:, P : P + K]).all(1)
    eligible = (art[:, P : P + K] != clean[:, P : P + K]).any(1)
    return 100.0 * hit[eligible].float().mean().item()


def accuracy(model, data) -> float:
    """Teacher-forced next-token accuracy over the test distributions (PAD included, as the paper)."""
    with torch.no_grad():
        accs = [(model.eval()(input_ids=r).logits.argmax(-1)[:, :-1] == r[:, 1:]).float().mean().item()
                for r in data.tests.values()]
    return sum(accs) / len(accs)


MEM_MODEL = TinyMemModelConfig(n_layer=1, n_embd=64, n_head=2, n_positions=64)


@pytest.fixture(scope="module")
def memorizing(tmp_path_factory):
    """12 noise artifacts seen 100x among ~200 clean rows; a 1-layer 64-d model trained 3 epochs memorizes them."""
    torch.set_num_threads(1)
    data = generate(TinyMemDataConfig(task="increment", n_main=160, n_aux=60, n_test=30, aux_c=(2,),
                                      n_artifacts=12, dup_powers=(2,), length=12, max_ctx=64))
    recipe = PretrainRecipe(TrainConfig(epochs=3, batch_size=64, lr=3e-3), pad_id=PAD, score_pad=True)
    udata = PretrainedLMData(TokenData.from_rows(data.artifacts, PAD), TokenData.from_rows(data.clean_train, PAD),
                             {"train": TokenData.from_rows(data.train, PAD, score_pad=True),
                              "clean": TokenData.from_rows(data.artifacts_clean, PAD, score_pad=True)}, recipe)
    out = tmp_path_factory.mktemp("base")
    model = build_model(MEM_MODEL, seed=0)
    pretrain(model, udata.extra["train"], recipe.train, seed=0, out_dir=out, progress=False, trim=_trim)
    return data, udata, model, checkpoints(out)[-1]


def test_a_train_time_method_with_no_regularizer_reproduces_the_base_model(memorizing):
    class Plain(TrainTimeMethod):  # the contract without a regularizer: same init, same rows, same recipe
        config_cls = build_method("spectral_norm").config_cls

        def regularizer(self):
            return RegularizerConfig()

    _, udata, base, _ = memorizing
    other = build_model(MEM_MODEL, seed=5)
    result = Plain().unlearn(other, udata, RunContext(seed=0))
    assert result.model is other and hash_model(other) == hash_model(base)


def test_example_tied_dropout_memorizes_less_than_plain_training(memorizing):
    data, udata, base, _ = memorizing
    mem0, acc0 = percent_memorized(base, data), accuracy(base, data)
    model = build_model(MEM_MODEL, seed=1)
    result = build_method("example_tied_dropout").unlearn(model, udata, RunContext(seed=0))
    mem1, acc1 = percent_memorized(model, data), accuracy(model, data)
    print(f"example_tied_dropout: {mem0:.1f}% -> {mem1:.1f}% memorized, acc {acc0:.4f} -> {acc1:.4f}")
    assert mem0 >= 80 and mem1 <= 20
    assert acc1 >= acc0 - 0.05
    assert result.info["rows"] == "extra['train']" and result.info["epochs"] == 3
    assert set(model.state_dict()) == set(base.state_dict())
    # the reference's per-row ids: 100 copies of an artifact get 100 masks, only the shared neurons can fit it
    per_row = build_model(MEM_MODEL, seed=1)
    build_method("example_tied_dropout", {"tie": "row"}).unlearn(per_row, udata, RunContext(seed=0))
    assert percent_memorized(per_row, data) >= 50


@pytest.mark.parametrize("name", ["finetune_clean", "finetune_extra", "finetune_both"])
def test_finetuning_removes_memorization_and_keeps_accuracy(memorizing, name):
    data, udata, base, ckpt = memorizing
    mem0, acc0 = percent_memorized(base, data), accuracy(base, data)
    model = copy.deepcopy(base)
    result = build_method(name, {"optimizer_state": str(ckpt)}).unlearn(model, udata, RunContext(seed=0))
    mem1, acc1 = percent_memorized(model, data), accuracy(model, data)
    print(f"{name}: {mem0:.1f}% -> {mem1:.1f}% memorized, acc {acc0:.4f} -> {acc1:.4f} ({result.info['rows']})")
    assert result.model is model and len(result.logs) == 5 and all(math.isfinite(e["loss"]) for e in result.logs)
    assert mem1 <= mem0 - 50
    assert acc1 >= acc0 - 0.03


def test_optimizer_state_must_exist_and_belong_to_the_model(memorizing, tmp_path):
    _, udata, base, ckpt = memorizing
    with pytest.raises(ObliviateError, match="does not exist"):
        build_method("finetune_extra", {"optimizer_state": str(tmp_path / "nope")}).unlearn(
            copy.deepcopy(base), udata, RunContext(seed=0))
    with pytest.raises(ObliviateError, match="differ from the model"):
        build_method("finetune_extra", {"optimizer_state": str(ckpt)}).unlearn(
            build_model(MEM_MODEL, seed=3), udata, RunContext(seed=0))


def test_finetune_clean_needs_clean_rows(micro_data):
    data = LMUnlearnData.from_rows(micro_data.artifacts, micro_data.clean_train[:8], PAD)
    with pytest.raises(ObliviateError, match=r"extra\['clean'\]"):
        build_method("finetune_clean").unlearn(build_model(TINY, seed=0), data)


def test_the_suite_passes_what_the_methods_need(micro_data):
    from obliviate.suites.tinymem import TinyMemConfig, TinyMemSuite

    cfg = TinyMemConfig()
    before = {"percent_memorized": {"per_item": [1.0, None] * (len(micro_data.artifacts) // 2)}}
    udata = TinyMemSuite().unlearn_data(micro_data, before, cfg)
    assert isinstance(udata, PretrainedLMData) and isinstance(udata, LMUnlearnData)
    assert len(udata.forget) == len(micro_data.artifacts) // 2
    assert torch.equal(udata.extra["train"].input_ids, micro_data.train)
    assert bool((udata.extra["train"].labels == micro_data.train).all())  # PAD scored, as pre-training
    assert torch.equal(udata.extra["clean"].input_ids, micro_data.artifacts_clean)
    assert udata.recipe == PretrainRecipe(cfg.train, pad_id=PAD, score_pad=True)
