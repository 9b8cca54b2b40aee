"""Every family's unlearning data enforces the same split rule (one helper), plus its own type checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from obliviate.errors import ObliviateError
from obliviate.families.classifier import ClassifierUnlearnData, LabeledData
from obliviate.families.lm import LMUnlearnData, TokenData
from obliviate.families.topic import CountData, TopicUnlearnData


def _lm(n):
    return TokenData.from_sequences([[1, 2, 3]] * n, pad_id=0)


def _img(n):
    return LabeledData(torch.zeros(n, 3, 4, 4), torch.zeros(n, dtype=torch.long))


def _docs(n, v=5):
    return CountData(np.ones((n, v), dtype=np.int64))


@pytest.mark.parametrize("make,cls,split,unit", [
    (lambda n: LMUnlearnData(_lm(n), _lm(2)), LMUnlearnData, "TokenData", "rows"),
    (lambda n: ClassifierUnlearnData(_img(n), _img(2)), ClassifierUnlearnData, "LabeledData", "examples"),
    (lambda n: TopicUnlearnData(_docs(n), _docs(2)), TopicUnlearnData, "CountData", "documents"),
])
def test_split_rule_is_the_same_in_every_family(make, cls, split, unit):
    assert len(make(3).forget) == 3
    with pytest.raises(ObliviateError, match=f"forget set is empty \\(0 {unit}\\)"):
        make(0)
    with pytest.raises(ObliviateError, match=f"the retain split must be {split}, got (a )?str"):
        cls(make(1).forget, "not data")


def test_retain_is_optional_only_where_the_family_allows_it():
    assert LMUnlearnData(_lm(1)).retain is None
    assert ClassifierUnlearnData(_img(1)).retain is None
    with pytest.raises(ObliviateError, match="the retain split must be CountData, got NoneType"):
        TopicUnlearnData(_docs(1), None)
    with pytest.raises(ObliviateError, match="the extra_val split must be LabeledData"):
        ClassifierUnlearnData(_img(1), extra={"extra_val": _lm(1)})


def test_family_specific_checks():
    with pytest.raises(ObliviateError, match="2 inputs but 3 labels"):
        LabeledData(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ObliviateError, match="integer word counts"):
        CountData(np.ones((2, 3)))
    with pytest.raises(ObliviateError, match="vocabularies differ"):
        TopicUnlearnData(_docs(1, 5), _docs(1, 6))
