"""Published reference numbers shipped with the analyzer ([P] Table 5, DeepEP V1's tables).

`published()` returns them as a frame with `published=True` and a `source` column, so a
report can set them beside measurements and predictions without ever mixing them up.
The file is results/data/published.csv; every row names its source and table.
"""

from __future__ import annotations

import importlib.resources
import io

import pandas as pd


def published() -> pd.DataFrame:
    """All shipped reference rows (value in `unit`; `convention` names the byte counting)."""
    text = importlib.resources.files("results").joinpath("data/published.csv").read_text()
    frame = pd.read_csv(io.StringIO(text), comment="#", dtype={"num_ranks": "Int64"})
    frame["convention"] = frame["convention"].fillna("")
    frame["published"] = True
    return frame
