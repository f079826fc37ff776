"""The sink: the results schema, readers and importers, statistics, comparisons, plots and
reports. Reads files; imports nothing from bench/ or collectives/.

`results.load(paths)` (results/loader.py) returns the tidy frame of any mix of epbench,
nccl-tests, OSU and DeepEP files; `results.load_all` also returns per-rank samples, provenance
and problems.
They are imported on first use, so that writing results (results.schema) stays light.
"""

from typing import Any

__all__ = ["Loaded", "load", "load_all"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from results import loader as _loader

        return getattr(_loader, name)
    raise AttributeError(f"module 'results' has no attribute {name!r}")
