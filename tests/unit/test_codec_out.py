import torch, pytest
from collectives import codecs
@pytest.mark.parametrize("name", ["fp8_e4m3", "logfmt8", "bf16"])
@pytest.mark.parametrize("impl", ["numba", "torch", "numpy"])
def test_out(name, impl):
    c = codecs.get(name, impl)
    x = torch.randn(5, 300)
    out = torch.full((c.wire_bytes(5, 300),), 7, dtype=torch.uint8)
    r = c.encode(x, out=out)
    assert r.data_ptr() == out.data_ptr()
    assert torch.equal(out, c.encode(x))
    with pytest.raises(ValueError, match="out="):
        c.encode(x, out=out[:-1])
