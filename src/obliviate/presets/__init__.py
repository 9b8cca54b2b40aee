"""Built-in configs (YAML files in this package). Each names its suite (``suite:``; tinymem when absent)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from obliviate.config import apply_overrides, load_yaml
from obliviate.errors import ObliviateError, unknown_name_error


def preset_names(suite: str | None = None) -> list[str]:
    """Preset names, optionally only those of one suite."""
    names = sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))
    return [n for n in names if suite is None or preset_suite(n) == suite]


def preset_suite(name: str) -> str:
    return str(preset_dict(name).get("suite", "tinymem"))


def preset_dict(name: str) -> dict[str, Any]:
    names = sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))
    if name not in names:
        raise unknown_name_error("preset", name, names)
    with resources.as_file(resources.files(__name__) / f"{name}.yaml") as path:
        return load_yaml(path)


def load_run_config(preset: str | None = None, config_file: str | Path | None = None,
                    overrides: list[str] | None = None, suite: str | None = None) -> Any:
    """A validated ``RunConfig`` from a preset name or a YAML file (default: the suite's default preset),
    plus ``key.sub=value`` overrides."""
    from obliviate.runconfig import run_config_from_dict
    from obliviate.suites import SUITES

    if preset is not None and config_file is not None:
        raise ObliviateError("give either --preset or --config, not both")
    if config_file is not None:
        raw = load_yaml(config_file)
    else:
        raw = preset_dict(preset or SUITES.get(suite or "tinymem").default_preset)
    raw.setdefault("suite", "tinymem")
    if suite is not None and raw["suite"] != suite:
        where = f"preset {preset!r}" if config_file is None else f"config {str(config_file)!r}"
        raise ObliviateError(f"{where} is for suite {raw['suite']!r}, not {suite!r} "
                             f"(presets of {suite!r}: {', '.join(preset_names(suite)) or 'none'})")
    return run_config_from_dict(apply_overrides(raw, overrides or []))
