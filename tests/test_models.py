"""Models: PyTorch parity of whole networks (float64), block gradchecks, lesions, hooks, options.

The PyTorch oracle below is written from the papers' definitions with torch's own layers, with
torchvision's attribute names; weights move into it by state-dict name, so a wrong name, layout or
op in minires fails the parity tests.
"""
import numpy as np
import pytest

import minires as mr
import minires.functional as F
from minires import models
from minires.models import BasicBlock, Bottleneck, PreActBlock, ResNet
from minires.nn import Conv2d, LayerError, MaxPool2d

from conftest import assert_close

PARITY_RTOL = 1e-8


# ----------------------------------------------------------------------------- the PyTorch oracle
def torch_resnet(torch, block, stage_depths, widths, imagenet=False, num_classes=10, in_channels=3, **options):
    """A ResNet in plain PyTorch: ``block`` is "basic", "bottleneck" or "preact"; ``options`` are
    ``residual``, ``shortcut`` ("A"/"B"/"C") and ``stride_in_3x3``."""
    nn, tF = torch.nn, torch.nn.functional

    class ZeroPad(nn.Module):  # option A: subsample, then append zero channels
        def __init__(self, extra, stride):
            super().__init__()
            self.extra, self.stride = extra, stride

        def forward(self, x):
            return tF.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))

    def shortcut(option, cin, cout, stride, with_bn=True):
        changes = stride != 1 or cin != cout
        if option == "C" or (option == "B" and changes):
            return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                 *([nn.BatchNorm2d(cout)] if with_bn else []))
        return ZeroPad(cout - cin, stride) if changes else None

    def conv3x3(cin, cout, stride=1):
        return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)

    class Basic(nn.Module):
        expansion = 1

        def __init__(self, cin, planes, stride, residual=True, shortcut_option="A"):
            super().__init__()
            self.conv1, self.bn1, self.relu = conv3x3(cin, planes, stride), nn.BatchNorm2d(planes), nn.ReLU()
            self.conv2, self.bn2 = conv3x3(planes, planes), nn.BatchNorm2d(planes)
            self.downsample = shortcut(shortcut_option, cin, planes, stride) if residual else None
            self.residual = residual

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            if self.residual:
                out = out + (x if self.downsample is None else self.downsample(x))
            return self.relu(out)

    class Bottle(nn.Module):
        expansion = 4

        def __init__(self, cin, planes, stride, residual=True, shortcut_option="B", stride_in_3x3=False):
            super().__init__()
            s1, s3 = (1, stride) if stride_in_3x3 else (stride, 1)
            self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, s1, bias=False), nn.BatchNorm2d(planes)
            self.conv2, self.bn2 = conv3x3(planes, planes, s3), nn.BatchNorm2d(planes)
            self.conv3, self.bn3 = nn.Conv2d(planes, 4 * planes, 1, bias=False), nn.BatchNorm2d(4 * planes)
            self.relu = nn.ReLU()
            self.downsample = shortcut(shortcut_option, cin, 4 * planes, stride) if residual else None
            self.residual = residual

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn3(self.conv3(self.relu(self.bn2(self.conv2(out)))))
            if self.residual:
                out = out + (x if self.downsample is None else self.downsample(x))
            return self.relu(out)

    class PreAct(nn.Module):
        expansion = 1

        def __init__(self, cin, planes, stride, residual=True, shortcut_option="A"):
            super().__init__()
            self.bn1, self.relu, self.conv1 = nn.BatchNorm2d(cin), nn.ReLU(), conv3x3(cin, planes, stride)
            self.bn2, self.conv2 = nn.BatchNorm2d(planes), conv3x3(planes, planes)
            self.downsample = shortcut(shortcut_option, cin, planes, stride, with_bn=False) if residual else None
            self.residual = residual

        def forward(self, x):
            pre = self.relu(self.bn1(x))
            out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
            if not self.residual:
                return out
            return out + (x if self.downsample is None else self.downsample(pre))

    block_class = {"basic": Basic, "bottleneck": Bottle, "preact": PreAct}[block]
    if "shortcut" in options:
        options["shortcut_option"] = options.pop("shortcut")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            stem = 64 if imagenet else widths[0]
            self.preact = block == "preact"
            self.conv1 = (nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False) if imagenet
                          else conv3x3(in_channels, stem))
            if not self.preact:
                self.bn1 = nn.BatchNorm2d(stem)
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, 2, 1) if imagenet else nn.Identity()
            cin = stem
            for i, (depth, width) in enumerate(zip(stage_depths, widths)):
                blocks = []
                for j in range(depth):
                    blocks.append(block_class(cin, width, 2 if (j == 0 and i > 0) else 1, **options))
                    cin = width * block_class.expansion
                setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            if self.preact:
                self.final_bn = nn.BatchNorm2d(cin)
            self.fc = nn.Linear(cin, num_classes)
            self.stages = len(stage_depths)

        def forward(self, x):
            x = self.conv1(x)
            if not self.preact:
                x = self.relu(self.bn1(x))
            x = self.maxpool(x)
            for i in range(self.stages):
                x = getattr(self, f"layer{i + 1}")(x)
            if self.preact:
                x = self.relu(self.final_bn(x))
            return self.fc(x.mean(dim=(2, 3)))

    return Net().double()



def torch_vgg(torch, layers, num_classes=1000, in_channels=3, batch_norm=False):
    """A VGG in plain torch.nn with torchvision's layout: ``features`` (3x3 convs with bias, [BN,] ReLU; 2x2
    max pools for "M"), ``avgpool`` to 7x7, ``classifier`` (fc 4096, ReLU, dropout, fc 4096, ReLU, dropout, fc)."""
    nn = torch.nn
    features = []
    for width in layers:
        if width == "M":
            features.append(nn.MaxPool2d(2, 2))
            continue
        features += [nn.Conv2d(in_channels, width, 3, padding=1)] + ([nn.BatchNorm2d(width)] if batch_norm else [])
        features.append(nn.ReLU())
        in_channels = width
    net = nn.Sequential()
    net.features, net.avgpool, net.flatten = nn.Sequential(*features), nn.AdaptiveAvgPool2d(7), nn.Flatten()
    net.classifier = nn.Sequential(nn.Linear(in_channels * 49, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096),
                                   nn.ReLU(), nn.Dropout(), nn.Linear(4096, num_classes))
    return net

def randomise_bn(model, rng):
    """Non-trivial BN parameters and running statistics, so that the parity tests see them."""
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith(("running_mean", "bias")):
            state[key] = rng.normal(0, 0.2, value.shape)
        elif key.endswith("running_var") or (key.endswith("weight") and value.ndim == 1):
            state[key] = rng.uniform(0.5, 1.5, value.shape)
    model.load_state_dict(state)


def check_parity(torch, model, reference, input_shape, seed=0):
    """Same weights, same batch, float64, training mode: logits, loss, input and parameter
    gradients, and the updated running statistics agree; then eval-mode logits agree too."""
    rng = np.random.default_rng(seed)
    model.double()
    randomise_bn(model, rng)
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})  # strict by name
    x = rng.standard_normal(input_shape)
    labels = rng.integers(0, model.fc.out_features, input_shape[0])

    ours_x = mr.tensor(x, requires_grad=True)
    ours = model.train()(ours_x)
    ours_loss = F.cross_entropy(ours, labels)
    ours_loss.backward()
    ref_x = torch.tensor(x, requires_grad=True)
    ref = reference.train()(ref_x)
    ref_loss = torch.nn.functional.cross_entropy(ref, torch.from_numpy(labels))
    ref_loss.backward()

    assert_close(ours, ref, PARITY_RTOL)
    assert_close(ours_loss, ref_loss, PARITY_RTOL)
    assert_close(ours_x.grad, ref_x.grad, PARITY_RTOL)
    ref_params = dict(reference.named_parameters())
    assert [name for name, _ in model.named_parameters()] == list(ref_params)
    for name, p in model.named_parameters():
        assert_close(p.grad, ref_params[name].grad, PARITY_RTOL)
    ref_state = reference.state_dict()
    for key, value in model.state_dict().items():
        assert_close(value, ref_state[key], PARITY_RTOL)
    with mr.no_grad(), torch.no_grad():
        assert_close(model.eval()(mr.tensor(x)), reference.eval()(torch.tensor(x)), PARITY_RTOL)


# ----------------------------------------------------------------------------- PyTorch parity
def test_resnet20_matches_pytorch(torch_oracle):
    model = models.resnet20()
    reference = torch_resnet(torch_oracle, "basic", (3, 3, 3), (16, 32, 64), shortcut="A")
    check_parity(torch_oracle, model, reference, (3, 3, 8, 8))


def test_resnet18_matches_pytorch(torch_oracle):
    model = models.resnet18(num_classes=7)
    reference = torch_resnet(torch_oracle, "basic", (2, 2, 2, 2), (64, 128, 256, 512), imagenet=True,
                             num_classes=7, shortcut="B")
    check_parity(torch_oracle, model, reference, (3, 3, 32, 32))


CIFAR_VARIANTS = [dict(residual=True, shortcut=s, preact=p) for s in "ABC" for p in (False, True)] + \
                 [dict(residual=False, preact=p) for p in (False, True)]


@pytest.mark.parametrize("options", CIFAR_VARIANTS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_every_cifar_variant_matches_pytorch(torch_oracle, options):
    """Depth 8 (one block per stage), widths 4/8/16, 2 input channels: forward and backward."""
    model = models.cifar_resnet(8, width=4, num_classes=5, in_channels=2, **options)
    options = dict(options)
    block = "preact" if options.pop("preact") else "basic"
    reference = torch_resnet(torch_oracle, block, (1, 1, 1), (4, 8, 16), num_classes=5, in_channels=2, **options)
    check_parity(torch_oracle, model, reference, (3, 2, 8, 8))


@pytest.mark.parametrize("stride_in_3x3", [False, True])
def test_bottleneck_net_matches_pytorch(torch_oracle, stride_in_3x3):
    """A small ImageNet-style net of bottleneck blocks, stride on the 1x1 (paper) or on the 3x3 (v1.5)."""
    model = ResNet(Bottleneck, (1, 2), (4, 8), conv1=Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
                   maxpool=MaxPool2d(3, stride=2, padding=1), num_classes=3, shortcut="B",
                   stride_in_3x3=stride_in_3x3)
    reference = torch_resnet(torch_oracle, "bottleneck", (1, 2), (4, 8), imagenet=True, num_classes=3,
                             shortcut="B", stride_in_3x3=stride_in_3x3)
    check_parity(torch_oracle, model, reference, (2, 3, 32, 32))



@pytest.mark.parametrize("batch_norm", [False, True])
def test_vgg_matches_pytorch_by_state_dict_name(torch_oracle, batch_norm):
    """A small VGG (two conv stages, 28x28 input, so 7x7 before the classifier): its state dict loads into
    the PyTorch VGG by name, and eval-mode logits agree (dropout is off in eval mode)."""
    layers = (4, "M", 8, "M")
    model = models.VGG(layers, num_classes=3, in_channels=2, batch_norm=batch_norm).double()
    randomise_bn(model, np.random.default_rng(0))
    reference = torch_vgg(torch_oracle, layers, num_classes=3, in_channels=2, batch_norm=batch_norm).double()
    reference.load_state_dict({k: torch_oracle.from_numpy(v) for k, v in model.state_dict().items()})  # strict
    x = np.random.default_rng(1).standard_normal((2, 2, 28, 28))
    with mr.no_grad(), torch_oracle.no_grad():
        assert_close(model.eval()(mr.tensor(x)), reference.eval()(torch_oracle.tensor(x)), PARITY_RTOL)

# ----------------------------------------------------------------------------- gradient checks
@pytest.mark.parametrize("block_class, options", [
    (BasicBlock, dict(residual=True, shortcut="A")),
    (BasicBlock, dict(residual=True, shortcut="B")),
    (BasicBlock, dict(residual=False)),
    (PreActBlock, dict(residual=True, shortcut="B")),
], ids=["residual-A", "residual-B", "plain", "preact-B"])
def test_block_gradcheck(block_class, options):
    """The whole block (convs, training-mode BN, ReLU, shortcut, add) against finite differences,
    with respect to its input and every parameter."""
    mr.manual_seed(0)
    block = block_class(2, 3, stride=2, **options).double()
    x = mr.tensor(np.random.default_rng(1).standard_normal((2, 2, 5, 5)), requires_grad=True)
    params = list(block.parameters())
    assert mr.gradcheck(lambda x, *_: block(x), [x] + params, mode="full", max_full=1000)


# ----------------------------------------------------------------------------- every model runs
@pytest.mark.parametrize("options", CIFAR_VARIANTS + [dict(zero_init_residual=True)],
                         ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_cifar_variant_trains_one_step(options):
    """Forward, loss and backward without PyTorch: every parameter receives a finite gradient."""
    model = models.cifar_resnet(14, width=4, **options)
    logits = model(mr.tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)), dtype="float32"))
    assert logits.shape == (2, 10)
    F.cross_entropy(logits, [1, 7]).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape and np.isfinite(p.grad.numpy()).all(), name


def test_every_named_model_is_listed_and_builds_small():
    expected = {f"resnet{d}" for d in (20, 32, 44, 56, 110, 1202, 18, 34, 50, 101, 152)} | \
               {f"plain{d}" for d in (20, 32, 44, 56, 110, 18, 34)} | {"vgg19"}
    assert set(models.list_models()) == expected
    assert isinstance(models.get_model("plain20", num_classes=3), ResNet)
    with pytest.raises(ValueError, match="unknown model 'resnet21'.*resnet20"):
        models.get_model("resnet21")


def test_resnet50_forward_on_a_tiny_input():
    x = mr.tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)), dtype="float32")
    logits = models.resnet50(num_classes=4)(x)
    assert logits.shape == (2, 4) and np.isfinite(logits.numpy()).all()


@pytest.mark.parametrize("depth, message", [(21, "6n \\+ 2"), (2, "6n \\+ 2"), ("20", "got '20'"), (20.0, "got 20.0")])
def test_cifar_depth_must_be_6n_plus_2(depth, message):
    with pytest.raises(ValueError, match=message):
        models.cifar_resnet(depth)


@pytest.mark.parametrize("width", [0, -4, 2.5, True])
def test_cifar_width_must_be_a_positive_integer(width):
    with pytest.raises(ValueError, match=rf"cifar_resnet: width must be a positive integer \(16 in the paper\), "
                                         rf"got {width!r}"):
        models.cifar_resnet(20, width=width)


def test_cifar_net_with_no_input_channels_is_built_as_pytorch_builds_its_conv():
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):   # torch's Conv2d(0, ...)
        model = models.cifar_resnet(8, width=4, in_channels=0)
    assert model.conv1.weight.shape == (4, 0, 3, 3)


def test_unknown_shortcut_option_is_refused():
    with pytest.raises(ValueError, match="shortcut must be one of"):
        models.cifar_resnet(20, shortcut="D")
    with pytest.raises(ValueError, match="depth must be one of"):
        models.imagenet_resnet(19)
    with pytest.raises(ValueError, match="got '18'"):        # a string that reads like a valid depth
        models.imagenet_resnet("18")


def test_plain_twin_has_no_shortcuts_and_same_layers():
    plain, residual = models.plain20(), models.resnet20()
    assert all(block.downsample is None and not block.residual for block in plain.blocks())
    assert [k for k in plain.state_dict()] == [k for k in residual.state_dict()]


def test_torchvision_state_dict_names():
    keys = set(models.resnet18().state_dict())
    for key in ["conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer1.0.bn2.running_var",
                "layer2.0.downsample.0.weight", "layer2.0.downsample.1.bias",
                "layer4.1.bn2.num_batches_tracked", "fc.weight", "fc.bias"]:
        assert key in keys
    cifar = set(models.resnet20(shortcut="B").state_dict())
    assert {"layer3.0.downsample.0.weight", "layer3.2.bn2.weight", "fc.bias"} <= cifar
    assert not any("downsample" in k for k in models.resnet20().state_dict())  # option A: no parameters


# ----------------------------------------------------------------------------- experiment handles
def _relu(a):
    return np.maximum(a, 0)


def test_branch_end_hook_records_the_branch_before_the_add():
    """y = relu(F(x) + x) for an identity-shortcut block, with F(x) read by a hook on branch_end."""
    block = models.resnet20().layer1[1]
    recorded = []
    block.branch_end.register_forward_hook(lambda module, inputs, output: recorded.append(output.numpy()))
    x = _relu(np.random.default_rng(0).standard_normal((2, 16, 6, 6))).astype(np.float32)
    y = block(mr.tensor(x)).numpy()
    assert block.branch_end is block.bn2
    np.testing.assert_allclose(y, _relu(recorded[0] + x), rtol=1e-6, atol=1e-6)


def test_lesioned_blocks_pass_on_their_shortcut():
    net = models.resnet20()
    x = _relu(np.random.default_rng(0).standard_normal((2, 16, 8, 8))).astype(np.float32)
    same_shape, downsampling = net.layer1[1], net.layer2[0]
    same_shape.lesioned = downsampling.lesioned = True
    np.testing.assert_array_equal(same_shape(mr.tensor(x)).numpy(), x)
    subsampled = x[:, :, ::2, ::2]
    expected = np.concatenate([subsampled, np.zeros_like(subsampled)], axis=1)  # option A: zero channels
    np.testing.assert_array_equal(downsampling(mr.tensor(x)).numpy(), expected)


def test_lesioned_plain_block_is_the_identity_or_refused():
    plain = models.plain20()
    x = mr.tensor(np.ones((1, 16, 4, 4), np.float32))
    plain.layer1[0].lesioned = True
    np.testing.assert_array_equal(plain.layer1[0](x).numpy(), x.numpy())
    plain.layer2[0].lesioned = True
    with pytest.raises(LayerError, match="layer2.0 \\(BasicBlock\\).*changes the shape"):
        plain(mr.tensor(np.ones((1, 3, 8, 8), np.float32)))


@pytest.mark.parametrize("preact", [False, True])
def test_zero_init_residual_makes_every_block_its_shortcut(preact):
    """With the end of every branch zeroed (last BN, or last conv when pre-activated), the net equals
    the same net with every block lesioned."""
    mr.manual_seed(3)
    net = models.resnet20(zero_init_residual=True, preact=preact).eval()
    x = mr.tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
    with mr.no_grad():
        full = net(x).numpy()
        for block in net.blocks():
            block.lesioned = True
        lesioned = net(x).numpy()
    np.testing.assert_allclose(full, lesioned, rtol=1e-6, atol=1e-6)
    assert not np.allclose(full, 0)



@pytest.mark.parametrize("preact", [False, True])
def test_zero_init_residual_is_refused_for_plain_nets(preact):
    """A plain block has no shortcut to start as: with its branch's end zeroed it outputs zeros, and
    the net's output no longer depends on its input (shown below by zeroing by hand)."""
    with pytest.raises(ValueError, match="zero_init_residual.*plain net"):
        models.cifar_resnet(8, residual=False, preact=preact, zero_init_residual=True)
    with pytest.raises(ValueError, match="zero_init_residual.*plain net"):
        models.plain18(zero_init_residual=True)

    plain = models.cifar_resnet(8, residual=False, preact=preact)
    for block in plain.blocks():
        block.branch_end.weight.data[...] = 0
    inputs = np.random.default_rng(0).standard_normal((2, 4, 3, 8, 8)).astype(np.float32)
    with mr.no_grad():
        first, second = (plain(mr.tensor(x)).numpy() for x in inputs)
    np.testing.assert_array_equal(first, second)

def test_bn_hooks_record_every_3x3_conv_response():
    """Fig. 7's layer responses: one BN after each of ResNet-20's 19 3x3 convs, output after BN."""
    net = models.resnet20()
    responses = []
    for module in net.modules():
        if type(module).__name__ == "BatchNorm2d":
            module.register_forward_hook(lambda m, i, out: responses.append(out.shape))
    net(mr.tensor(np.zeros((2, 3, 8, 8), np.float32)))
    assert len(responses) == 19
    assert responses[0] == (2, 16, 8, 8) and responses[-1] == (2, 64, 2, 2)


# ----------------------------------------------------------------------------- initialisation
def test_same_seed_same_weights():
    mr.manual_seed(7)
    a = models.resnet20().state_dict()
    mr.manual_seed(7)
    b = models.resnet20().state_dict()
    mr.manual_seed(8)
    c = models.resnet20().state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["conv1.weight"], c["conv1.weight"])


def test_he_initialisation_of_convs_and_bn():
    """Conv weights ~ N(0, 2 / fan_out) (fan_out = C_out k^2); BN weight 1, bias 0."""
    net = models.resnet56()
    weights = np.concatenate([net.layer3[i].conv2.weight.numpy().ravel() for i in range(9)])
    assert abs(weights.std() / np.sqrt(2 / (64 * 9)) - 1) < 0.01
    assert abs(weights.mean()) < 0.01 * weights.std()
    assert np.all(net.layer2[3].bn1.weight.numpy() == 1) and np.all(net.layer2[3].bn1.bias.numpy() == 0)


def test_bad_input_names_the_layer():
    net = models.resnet20()
    with pytest.raises(LayerError, match="^conv1 \\(Conv2d\\): expected input of shape \\(N, C, H, W\\) with 3"):
        net(mr.tensor(np.zeros((2, 1, 8, 8), np.float32)))
    with pytest.raises(LayerError, match="conv1 \\(Conv2d\\): expected input of shape"):
        net(mr.tensor(np.zeros((3, 8, 8), np.float32)))
    with pytest.raises(TypeError, match="^conv1 \\(Conv2d\\): conv2d: input dtype float64"):
        net(mr.tensor(np.zeros((2, 3, 8, 8), np.float64)))
    small_vgg = models.VGG((4, "M", 4, "M"), num_classes=3)
    with pytest.raises(LayerError, match="features.5 \\(MaxPool2d\\): input of spatial size 1x1.*too small"):
        small_vgg(mr.tensor(np.zeros((1, 3, 3, 3), np.float32)))
