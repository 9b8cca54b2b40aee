"""The suite registry: each unlearning benchmark is a module with a VERSION, registered by name."""

from __future__ import annotations

from obliviate.registry import Registry

SUITES: Registry[object] = Registry("suite")
