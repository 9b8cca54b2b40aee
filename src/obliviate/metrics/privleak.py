"""PrivLeak (MUSE, Shi et al., 2024): how far an unlearned model's membership AUC on forget vs holdout is from a
retrained model's, relative to the latter. Pure functions of AUCs (comparisons, no model).

Two formulas (docs/methods.md, "MIA family and PrivLeak"):
- MUSE (the suite default; PrivLeak is MUSE's metric): (AUC - AUC_retrain) / AUC_retrain x 100 on MUSE-convention
  AUCs. ~0 is ideal; a model that still knows the forget set has AUC ~0 and PrivLeak ~ -100; > 0 = over-unlearned.
- open-unlearning: score = 1 - AUC, ref = 1 - AUC_retrain (or 1 - ``ref_value``, default 0.5), (score - ref) /
  (ref + 1e-10) x 100 on OU-convention AUCs. Since 1 - AUC_OU = AUC_MUSE, it equals MUSE's up to the 1e-10, given
  the same reference.
"""

from __future__ import annotations

from obliviate.errors import ObliviateError, unknown_name_error
from obliviate.metrics.base import register_metric
from obliviate.metrics.mia import MIAResult
from obliviate.papers import MUSE
from obliviate.types import MetricResult

MUSE_PRIVLEAK_KEY = "forget_holdout_Min-40%"  # MUSE's default AUC key: set A forget, set B holdout, Min-K% k=0.4
MUSE_RETRAIN_AUC_NEWS = 0.4772  # published retrained-model AUC (muse_bench constants.py), MUSE-News, that key
MUSE_RETRAIN_AUC_BOOKS = 0.5393  # same, MUSE-Books
FORMULAS = ("muse", "ou")


def muse_retrain_auc(corpus: str, key: str = MUSE_PRIVLEAK_KEY) -> float:
    """The published retrained-model AUC of a MUSE corpus ("news" or "books"); only the default key is shipped."""
    table = {"news": MUSE_RETRAIN_AUC_NEWS, "books": MUSE_RETRAIN_AUC_BOOKS}
    if corpus not in table:
        raise unknown_name_error("MUSE corpus", corpus, table)
    if key != MUSE_PRIVLEAK_KEY:
        raise ObliviateError(f"no published MUSE retrain AUC for key {key!r} (shipped: {MUSE_PRIVLEAK_KEY!r}); pass "
                             "the AUC of your own retrained model instead")
    return table[corpus]


def muse_privleak(auc: float, retrain_auc: float) -> float:
    """MUSE: (AUC - AUC_retrain) / AUC_retrain x 100, both MUSE-convention AUCs."""
    if retrain_auc <= 0:
        raise ObliviateError(f"MUSE PrivLeak divides by the retrained AUC, which must be > 0, got {retrain_auc}")
    return (auc - retrain_auc) / retrain_auc * 100.0


def ou_privleak(auc: float, retain_auc: float | None = None, ref_value: float = 0.5) -> float:
    """open-unlearning's privleak on OU-convention AUCs: score = 1 - auc, ref = 1 - retain_auc (the retrained
    model's AUC) or 1 - ref_value; (score - ref) / (ref + 1e-10) x 100."""
    score = 1.0 - auc
    ref = 1.0 - (ref_value if retain_auc is None else retain_auc)
    return (score - ref) / (ref + 1e-10) * 100.0


def ou_rel_diff(value: float, ref: float | None = None, ref_value: float = 0.5) -> float:
    """open-unlearning's rel_diff: privleak without the 1 - x, (value - ref) / (ref + 1e-10) x 100."""
    r = ref_value if ref is None else ref
    return (value - r) / (r + 1e-10) * 100.0


def _published_ok(mia: MIAResult) -> None:
    if mia.attack != "min_k" or mia.k != 0.4 or tuple(mia.names) != ("forget", "holdout"):
        raise ObliviateError(f"the published MUSE retrain AUCs are for {MUSE_PRIVLEAK_KEY!r}; this result is "
                             f"{mia.names[0]}_{mia.names[1]} {mia.attack} (k={mia.k}): pass retrain= the AUC of your "
                             "own retrained model on the same attack")


@register_metric("privleak", higher_is_better=True, needs_model=False, paper=MUSE,
                 description="MUSE PrivLeak % = (AUC - AUC_retrain)/AUC_retrain x 100 of the forget-vs-holdout "
                             "Min-40% AUC; 0 is ideal, -100 = forget set fully exposed, > 0 = over-unlearned")
def privleak(mia: MIAResult | float, *, corpus: str | None = None, retrain: MIAResult | float | None = None,
             formula: str = "muse", ref_value: float = 0.5) -> MetricResult:
    """PrivLeak of an unlearned model's MIA result against a retrained reference.

    The reference is ``retrain`` (your retrained model's MIAResult or AUC) or, with ``corpus`` ("news"/"books"),
    MUSE's published retrain AUC; OU's formula falls back to ``ref_value`` when neither is given. A bare float is
    taken to be an AUC in the formula's own convention; an MIAResult is converted (AUC_OU = 1 - AUC_MUSE)."""
    if formula not in FORMULAS:
        raise unknown_name_error("PrivLeak formula", formula, FORMULAS)
    if corpus is not None and retrain is not None:
        raise ObliviateError("give either corpus= (the published retrain AUC) or retrain= (your own), not both")
    auc = mia.auc_as(formula) if isinstance(mia, MIAResult) else float(mia)
    ref: float | None = None
    if retrain is not None:
        ref = retrain.auc_as(formula) if isinstance(retrain, MIAResult) else float(retrain)
    elif corpus is not None:
        if isinstance(mia, MIAResult):
            _published_ok(mia)
        published = muse_retrain_auc(corpus)  # MUSE convention
        ref = published if formula == "muse" else 1.0 - published
    if formula == "muse":
        if ref is None:
            raise ObliviateError("MUSE PrivLeak needs a retrained reference: corpus='news' or 'books' (published "
                                 "AUCs) or retrain= the MIA result / AUC of a model retrained without the forget set")
        return MetricResult("privleak", muse_privleak(auc, ref), True, breakdown={"auc": auc, "retrain_auc": ref})
    value = ou_privleak(auc, ref, ref_value)
    return MetricResult("privleak_ou", value, True,
                        breakdown={"auc": auc, "retrain_auc": ref_value if ref is None else ref})
