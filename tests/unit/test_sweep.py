"""Sweep specs: parsing, located errors, and the randomized block plan (no processes)."""

from __future__ import annotations

import collections
import pathlib

import pytest

from bench import sweep

SPEC = """\
[sweep]
name = "ib-ar"
repeats = 3
seed = 5
blocks_per_task = 2

[cluster]
nodes = [2, 4]
gpus_per_node = 8
fabric = "ib"
topology = "deepseek-mpft"

[[op]]
name = "alltoall"
begin = "1K"
end = "1G"
check = true

[[op]]
name = "allreduce"
args = ["--redop", "max"]

[matrix]
backends = ["nccl", "mpi"]

[compare]
NCCL_IB_ADAPTIVE_ROUTING = [0, 1]
pxn = ["on", "off"]
"""


def test_parse_reads_every_section():
    spec = sweep.parse(SPEC, "ab.toml")
    assert spec.name == "ib-ar" and spec.repeats == 3 and spec.seed == 5
    assert spec.nodes == (2, 4) and spec.gpus_per_node == (8,)
    assert spec.tags == {"fabric": "ib", "topology": "deepseek-mpft"}
    assert spec.ops[0].args == ("-b", "1K", "-e", "1G", "-c", "1")
    assert spec.ops[1].args == ("--redop", "max")
    assert spec.backends == ("nccl", "mpi") and spec.codecs == ("none",)
    # pxn on/off becomes NCCL_PXN_DISABLE 0/1
    assert spec.knobs == (
        ("NCCL_IB_ADAPTIVE_ROUTING", ("0", "1")),
        ("NCCL_PXN_DISABLE", ("0", "1")),
    )


def test_plan_blocks_hold_every_arm_once_in_random_order():
    spec = sweep.parse(SPEC, "ab.toml")
    steps = sweep.plan(spec, seed=5)
    # 2 shapes x 3 repeats x (2 ops x 2 backends) cases, 4 arms each
    assert len(steps) == 2 * 3 * 4 * 4
    blocks = collections.defaultdict(list)
    for step in steps:
        blocks[(step.nodes, step.block)].append(step)
    orders = set()
    for members in blocks.values():
        assert [s.position for s in members] == [0, 1, 2, 3]
        assert len({(s.op, s.backend, s.codec, s.rank_map) for s in members}) == 1
        assert sorted(s.arm for s in members) == sorted(
            f"NCCL_IB_ADAPTIVE_ROUTING={a},NCCL_PXN_DISABLE={p}" for a in "01" for p in "01"
        )
        orders.add(tuple(s.arm for s in members))
    assert len(orders) > 1, "arm order never changes between blocks"
    # blocks of a shape are consecutive in run order; two blocks per array task
    assert [s.task for s in steps if s.nodes == 2] == [b // 2 for b in range(12) for _ in range(4)]
    assert len({s.id for s in steps}) == len(steps)


def test_plan_is_reproducible_from_its_seed():
    spec = sweep.parse(SPEC, "ab.toml")
    assert sweep.plan(spec, 5) == sweep.plan(spec, 5)
    assert [s.arm for s in sweep.plan(spec, 5)] != [s.arm for s in sweep.plan(spec, 6)]


def test_rank_map_can_be_compared():
    text = SPEC.replace('pxn = ["on", "off"]', 'rank_map = ["plane-aligned", "misaligned"]')
    steps = sweep.plan(sweep.parse(text, "ab.toml"), 1)
    assert {s.rank_map for s in steps} == {"plane-aligned", "misaligned"}
    assert all("NCCL_IB_ADAPTIVE_ROUTING" in s.env and "rank_map" not in s.env for s in steps)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("repeats = 3", "repeats = 3\nrepeatz = 2", "ab.toml:4: [sweep] repeatz: unknown key"),
        ('fabric = "ib"', "fabric = 3", "ab.toml:10: [cluster] fabric: 3 is not a string"),
        ("nodes = [2, 4]", "nodes = [2, 0]", "ab.toml:8: [cluster] nodes: [2, 0]: counts must"),
        ('end = "1G"', 'end = "1G"\nsize = 3', "ab.toml:17: [op.0] size: unknown key"),
        ('args = ["--redop", "max"]', "argz = 1", "ab.toml:21: [op.1] argz: unknown key"),
        ('backends = ["nccl", "mpi"]', 'backends = ["ucx"]', "ab.toml:24: [matrix] backends"),
        ('pxn = ["on", "off"]', 'pxn = ["on"]', "ab.toml:28: [compare] pxn: ['on']: give"),
        ('pxn = ["on", "off"]', "nodes = [1, 2]", "ab.toml:28: [compare] nodes: cannot change"),
        ('pxn = ["on", "off"]', "nccl_x = [1, 2]", "ab.toml:28: [compare] nccl_x: unknown knob"),
        ("[matrix]", "[matrixx]", "ab.toml:23: [matrixx]: unknown table"),
        ('name = "ib-ar"', 'name = "a b"', "ab.toml:2: [sweep] name: 'a b': use letters"),
        ("repeats = 3", "repeats = 0", "ab.toml:3: [sweep] repeats: 0 is not an integer >= 1"),
        ('fabric = "ib"', 'mpi = "pmi3"', "ab.toml:10: [cluster] mpi: 'pmi3': use an srun"),
    ],
)
def test_errors_name_file_line_and_key(old, new, message):
    assert old in SPEC
    with pytest.raises(sweep.SpecError) as info:
        sweep.parse(SPEC.replace(old, new, 1), "ab.toml")
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_toml_syntax_error_has_a_line():
    with pytest.raises(sweep.SpecError, match=r"ab.toml: not valid TOML: .*line 3"):
        sweep.parse("[sweep]\nname = 'x'\nrepeats = = 2\n", "ab.toml")


def test_spec_without_ops_is_refused():
    with pytest.raises(sweep.SpecError, match=r"no \[\[op\]\] table"):
        sweep.parse("[sweep]\nname = 'x'\n", "ab.toml")


def test_key_line_finds_keys_in_the_right_table():
    text = "[a]\nx = 1\n[[op]]\nx = 2\n[[op]]\ny = 1\nx = 3\n"
    assert sweep.key_line(text, "a", "x") == 2
    assert sweep.key_line(text, "op.0", "x") == 4
    assert sweep.key_line(text, "op.1", "x") == 7
    assert sweep.key_line(text, "op.1", "z") == 5  # absent key: the table's header line


@pytest.mark.parametrize("name", ["ib-adaptive-routing.toml", "rank-map-alignment.toml"])
def test_example_specs_parse(name):
    path = pathlib.Path(__file__).resolve().parents[2] / "slurm" / "examples" / name
    spec = sweep.parse(path.read_text(), str(path))
    assert sweep.plan(spec, 1) and spec.knobs
