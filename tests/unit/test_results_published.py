"""The shipped published numbers load, are labelled, and hold the values of their sources."""

from __future__ import annotations

from results.published import published


def test_published_rows_are_labelled_and_complete() -> None:
    df = published()
    assert df["published"].all() and set(df["source"]) == {"[P]", "[EP]"}
    table5 = df[df["table"] == "Table 5"].set_index(["fabric", "scope"])["value"]
    assert table5[("InfiniBand", "same leaf")] == 2.8 and table5[("RoCE", "cross leaf")] == 5.6
    ll = df[(df["table"] == "low-latency kernels") & (df["metric"] == "latency")]
    assert len(ll) == 12 and sorted(ll["num_ranks"].unique()) == [8, 16, 32, 64, 128, 256]
    ep8 = df[(df["num_ranks"] == 8) & (df["scope"] == "intranode")]
    assert sorted(ep8["value"]) == [153, 158]
