"""FLOP and byte counts of the benchmarks, against the paper and hand counts."""
import pytest

from minires.bench.cost import DIRECTIONS, ConvShape, cifar_resnet_convs, training_step_conv_flops


def test_resnet20_multiply_adds_match_the_paper():
    convs = cifar_resnet_convs(n=3, batch=1)
    conv_macs = sum(c.count * c.macs() for c in convs)
    fc_macs = 64 * 10
    assert round((conv_macs + fc_macs) / 1e6, 2) == 40.55  # PAPER.md: 40.55M at 32x32


@pytest.mark.parametrize("name,n", [("resnet20", 3), ("resnet56", 9)])
def test_conv_shapes_match_the_model_layer_by_layer(name, n):
    from minires.models import get_model
    from minires.summary import summary
    rows = [r for r in summary(get_model(name), (2, 3, 32, 32)).rows if r.type == "Conv2d"]
    assert len(rows) == sum(c.count for c in cifar_resnet_convs(n, batch=2)) == 6 * n + 1
    assert sum(r.macs for r in rows) == sum(c.count * c.macs() for c in cifar_resnet_convs(n, batch=2))


def test_a_3x3_same_convolution_counted_by_hand():
    conv = ConvShape("3x3 on 3x3", (1, 1, 3, 3), (1, 1, 3, 3), stride=1, padding=1)
    assert conv.y_shape == (1, 1, 3, 3)
    assert conv.flops(["forward"]) == 2 * 9 * 9        # 9 outputs, 9 taps each (padding taps included)
    assert conv.flops() == 3 * 2 * 9 * 9
    assert conv.bytes(["forward"]) == 4 * (9 + 9 + 9)  # read x and w, write y, float32
    assert conv.bytes(DIRECTIONS, itemsize=8) == 3 * 8 * 27
    assert conv.im2col_bytes() == 4 * 2 * 9 * 9        # 9 rows x 9 columns, written and read


def test_stride_two_shrinks_the_output_and_the_work():
    conv = ConvShape("s2", (2, 16, 32, 32), (32, 16, 3, 3), stride=2, padding=1)
    assert conv.y_shape == (2, 32, 16, 16)
    assert conv.macs() == 2 * 32 * 16 * 16 * 16 * 9
    assert conv.bytes(["backward_weight"]) == 4 * (2 * 32 * 16 * 16 + 2 * 16 * 32 * 32 + 32 * 16 * 9)


def test_the_first_conv_counts_and_times_no_data_gradient(monkeypatch):
    """A training step never asks for the images' gradient, so the stem's row leaves backward-data out."""
    from minires.bench import measure
    stem, inner = cifar_resnet_convs(n=3, batch=2)[:2]
    assert stem.first and stem.directions == ("forward", "backward_weight")
    assert stem.flops() == 2 * 2 * stem.macs() and inner.flops() == 3 * 2 * inner.macs()
    asked = []
    real = measure.conv2d_gradients
    monkeypatch.setattr(measure, "conv2d_gradients",
                        lambda *a, need_input=True: asked.append(need_input) or real(*a, need_input=need_input))
    for conv in (stem, inner):
        measure.time_conv(conv, "cpu", repeat=1, warmup=0, impl="numpy")
    assert asked == [False, True]


def test_the_gpu_readmes_cost_table_and_its_reading_are_the_codes():
    """results/gpu/README.md's table of ResNet-20's conv costs at batch 128, and the numbers read from it:
    a step's conv GFLOP (ResNet-20 and -56), the FLOP per byte of the layers after conv1 and of conv1,
    how much the column matrix multiplies the 16->16 layers' traffic, and the GFLOP per call."""
    from pathlib import Path
    page = (Path(__file__).parents[1] / "results/gpu/README.md").read_text()
    text = " ".join(page.split())
    convs = cifar_resnet_convs(3, 128)
    for c in convs:
        fwd, fwd_bytes = c.flops(["forward"]), c.bytes(["forward"])
        row = (f"{c.name:18s} {c.count:6d} {fwd / 1e9:10.2f} {fwd_bytes / 1e6:7.2f} {fwd / fwd_bytes:7.2f} "
               f"{c.flops(DIRECTIONS) / 1e9:12.2f} {c.bytes(DIRECTIONS) / 1e6:9.2f} {c.im2col_bytes() / 1e6:10.2f}")
        assert row in page, row
    step20, step56 = (training_step_conv_flops(cifar_resnet_convs(n, 128)) / 1e9 for n in (3, 9))
    assert f"A ResNet-20 training step is {step20:.1f} GFLOP of convolution (ResNet-56: {step56:.1f} GFLOP)" in text
    first, *rest = [c.flops(["forward"]) / c.bytes(["forward"]) for c in convs]
    assert f"after conv1 do {min(rest):.0f} to {max(rest):.0f} FLOP per compulsory byte" in text
    assert f"conv1 ({first:.0f} FLOP/B) is bound by memory" in text
    wide = next(c for c in convs if c.name == "16->16 @32")
    by = wide.im2col_bytes() / wide.bytes(["forward"])
    assert (f"the traffic of the 16->16 layers by about {by:.0f} ({wide.im2col_bytes() / 1e6:.0f} MB against "
            f"{wide.bytes(['forward']) / 1e6:.1f} MB per direction)") in text
    calls = [c.flops(["forward"]) / 1e9 for c in convs]
    assert f"({min(calls):.1f} to {max(calls):.1f} GFLOP per call)" in text
