"""Built-in run configs (YAML). ``load_run_config`` merges a preset or file with dotted overrides."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from obliviate.config import apply_overrides, from_dict, load_yaml
from obliviate.errors import ObliviateError, unknown_name_error


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))


def preset_dict(name: str) -> dict[str, Any]:
    if name not in preset_names():
        raise unknown_name_error("preset", name, preset_names())
    with resources.as_file(resources.files(__name__) / f"{name}.yaml") as path:
        return load_yaml(path)


def load_run_config(preset: str | None = None, config_file: str | Path | None = None,
                    overrides: list[str] | None = None, default: str = "tinymem-cpu") -> tuple[Any, dict[str, Any]]:
    """(TinyMemConfig, raw dict) from a preset name or a YAML file, plus ``key.sub=value`` overrides."""
    from obliviate.suites.tinymem import TinyMemConfig

    if preset is not None and config_file is not None:
        raise ObliviateError("give either --preset or --config, not both")
    raw = load_yaml(config_file) if config_file is not None else preset_dict(preset or default)
    raw = apply_overrides(raw, overrides or [])
    return from_dict(TinyMemConfig, raw), raw
