"""Cluster presets: TOML files packaged in topologies/presets, read through importlib.resources.

`load_cluster(text_or_name)` accepts a preset name or the text of a TOML file (the caller reads
the file: this package touches no files but its own presets). Keys of a TOML cluster are the
fields of `topologies.cluster.Cluster`; `scale_out` and `scale_up` are profile names or tables
of LinkProfile fields (optionally with `base = "ib-ndr-400g"` and overrides).
"""

from __future__ import annotations

import importlib.resources
import importlib.resources.abc
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from topologies.cluster import Cluster, make_cluster


def _presets_dir() -> importlib.resources.abc.Traversable:
    return importlib.resources.files("topologies").joinpath("presets")


def preset_names() -> list[str]:
    """Names of the packaged presets, sorted."""
    files = _presets_dir()
    return sorted(p.name[: -len(".toml")] for p in files.iterdir() if p.name.endswith(".toml"))


def preset_text(name: str) -> str:
    """TOML text of a packaged preset."""
    if name not in preset_names():
        raise ValueError(f"unknown preset {name!r}; use one of {preset_names()} or a TOML file")
    return (_presets_dir() / f"{name}.toml").read_text(encoding="utf-8")


def cluster_from_toml(text: str, **overrides: Any) -> Cluster:
    """A Cluster from TOML text; `overrides` replace keys (e.g. num_nodes=32)."""
    try:
        fields = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"cluster TOML does not parse: {exc}") from None
    fields.update({k: v for k, v in overrides.items() if v is not None})
    if "gpu_nic" in fields:
        fields["gpu_nic"] = tuple(fields["gpu_nic"])
    fields.setdefault("name", "custom")
    return make_cluster(**fields)


def load_preset(name: str, **overrides: Any) -> Cluster:
    """A packaged preset by name, with optional field overrides."""
    return cluster_from_toml(preset_text(name), **overrides)


def load_cluster(name_or_text: str, **overrides: Any) -> Cluster:
    """A preset name, or TOML text of a cluster (as read from a file by the caller)."""
    if "\n" not in name_or_text and "=" not in name_or_text:
        return load_preset(name_or_text.strip(), **overrides)
    return cluster_from_toml(name_or_text, **overrides)
