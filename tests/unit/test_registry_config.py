from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from obliviate.config import apply_overrides, dump_yaml, from_dict, load_yaml, parse_override, to_dict
from obliviate.errors import ObliviateError
from obliviate.registry import Registry


def test_registry_did_you_mean_and_duplicates():
    reg: Registry[int] = Registry("widget")
    reg.register("balanced_subnet")(1)
    reg.register("subnet")(2)
    assert reg.get("subnet") == 2 and reg.names() == ["balanced_subnet", "subnet"]
    with pytest.raises(ObliviateError, match="did you mean 'balanced_subnet'"):
        reg.get("balanced_subnett")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("subnet")(3)


@dataclass(frozen=True)
class Inner:
    ratio: float = 0.1
    mode: Literal["a", "b"] = "a"

    def __post_init__(self) -> None:
        if not 0 < self.ratio < 1:
            raise ObliviateError(f"ratio must be in (0, 1), got {self.ratio}")


@dataclass(frozen=True)
class Outer:
    seed: int = 0
    powers: tuple[int, ...] = (0,)
    inner: Inner = field(default_factory=Inner)
    extra: dict[str, dict] = field(default_factory=dict)


def test_from_dict_roundtrip_through_yaml(tmp_path):
    cfg = from_dict(Outer, {"seed": 3, "powers": [0, 1, 2], "inner": {"ratio": "1e-3", "mode": "b"}})
    assert cfg == Outer(3, (0, 1, 2), Inner(0.001, "b"))
    p = tmp_path / "c.yaml"
    p.write_text(dump_yaml(cfg))
    assert from_dict(Outer, load_yaml(p)) == cfg
    assert to_dict(cfg)["powers"] == [0, 1, 2]


def test_unknown_keys_and_bad_values_are_named():
    with pytest.raises(ObliviateError, match="unknown config key .*'ratoi'.*did you mean 'ratio'"):
        from_dict(Outer, {"inner": {"ratoi": 0.1}})
    with pytest.raises(ObliviateError, match=r"ratio must be in \(0, 1\), got 2.0"):
        from_dict(Outer, {"inner": {"ratio": 2}})
    with pytest.raises(ObliviateError, match="expected an integer"):
        from_dict(Outer, {"seed": "x"})
    with pytest.raises(ObliviateError, match="'c'.*valid: a, b"):
        from_dict(Outer, {"inner": {"mode": "c"}})


def test_overrides():
    assert parse_override("method.ratio=0.05") == (["method", "ratio"], 0.05)
    assert parse_override("data.dup_powers=[0,1]") == (["data", "dup_powers"], [0, 1])
    base = {"inner": {"ratio": 0.1}}
    out = apply_overrides(base, ["inner.ratio=0.5", "seed=4", "extra.x.y=1"])
    assert out == {"inner": {"ratio": 0.5}, "seed": 4, "extra": {"x": {"y": 1}}}
    assert base == {"inner": {"ratio": 0.1}}  # not mutated
    with pytest.raises(ObliviateError, match="key.sub=value"):
        parse_override("novalue")
    with pytest.raises(ObliviateError, match="not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_missing_yaml_file_is_a_clear_error(tmp_path):
    with pytest.raises(ObliviateError, match="does not exist"):
        load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ObliviateError, match="not valid YAML"):
        load_yaml(bad)
