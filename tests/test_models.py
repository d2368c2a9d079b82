"""Scale-invariant models (thermonet.models): invariance, fixed head, registry."""

from __future__ import annotations

import pytest
import torch
from thermonet.models import (
    MODELS,
    FixedHead,
    ScaleInvariantNet,
    build_model,
    check_scale_invariance,
    get_model_class,
    model_names,
    register_model,
)
from torch import nn

from thermonet.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = [
    ("convnet-si", (3, 16, 16), 2),
    ("convnet-si", (1, 40), 2),
    ("resnet18-si", (3, 16, 16), 1),
    ("resnet18-si", (1, 24), 1),
    ("convnet1d-si", (1, 40), 2),
    ("mlp-si", (1, 40), 1),
    ("mlp-si", (3, 8, 8), 1),
]


@pytest.mark.parametrize("name,shape,width", CASES)
def test_outputs_do_not_change_when_trained_parameters_are_scaled(name, shape, width):
    torch.manual_seed(0)
    model = build_model(name, input_shape=shape, num_classes=5, width=width, seed=3, dtype=torch.float64)
    x = torch.randn(12, *shape, dtype=torch.float64)
    before = model(x)
    assert check_scale_invariance(model, x, scales=(0.1, 7.0)) < 1e-7
    # the check restores the parameters
    assert torch.equal(model(x), before)
    # explicit: scale every trained parameter by 7 by hand
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(7.0)
    assert torch.allclose(model(x), before, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name,shape,width", CASES[:1] + CASES[2:3] + CASES[4:6])
def test_head_is_a_fixed_buffer_of_norm_10_and_everything_trained_is_invariant(name, shape, width):
    model = build_model(name, input_shape=shape, num_classes=4, width=width, seed=0)
    trained = dict(model.named_parameters())
    assert "head.weight" not in trained
    assert "head.weight" in dict(model.named_buffers())
    assert abs(float(model.head.weight.norm()) - 10.0) < 1e-4
    assert all(p.requires_grad for p in trained.values())
    # no biases, no affine BN parameters anywhere
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            assert module.bias is None
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            assert module.weight is None and not module.track_running_stats
    assert model.num_trained() == sum(p.numel() for p in trained.values())


def test_head_norm_is_configurable():
    model = build_model("mlp-si", input_shape=(1, 10), num_classes=3, width=1, head_norm=2.5, seed=0)
    assert abs(float(model.head.weight.norm()) - 2.5) < 1e-5


def test_convnet_parameter_count_on_cifar_shapes():
    # D = 27k + 378k^2 for 3-channel inputs (docs/networks.md)
    for k in (1, 2, 8):
        model = build_model("convnet-si", input_shape=(3, 32, 32), num_classes=10, width=k, seed=0)
        assert model.num_trained() == 27 * k + 378 * k * k


def test_resnet_downsampling_shortcut_is_normalised():
    model = build_model("resnet18-si", input_shape=(3, 32, 32), num_classes=10, width=2, seed=0)
    shortcuts = [m.shortcut for m in model.modules() if getattr(m, "shortcut", None) is not None]
    assert len(shortcuts) == 3  # stages 2, 3, 4 downsample
    for sc in shortcuts:
        assert isinstance(sc[0], nn.BatchNorm2d) and sc[0].weight is None
        assert isinstance(sc[1], nn.Conv2d) and sc[1].stride == (2, 2)


def test_seeded_build_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = build_model("convnet1d-si", input_shape=(1, 40), num_classes=10, width=2, seed=5)
    after = torch.rand(3)
    b = build_model("convnet1d-si", input_shape=(1, 40), num_classes=10, width=2, seed=5)
    c = build_model("convnet1d-si", input_shape=(1, 40), num_classes=10, width=2, seed=6)
    assert torch.equal(after, expected)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.conv_layers[0].weight, c.conv_layers[0].weight)


def test_check_detects_a_model_that_is_not_scale_invariant():
    class WithBias(ScaleInvariantNet):  # not registered: no name
        input_ranks = (2,)

        def build(self, width):
            self.conv = nn.Conv1d(self.in_channels, 4, 3, bias=True)  # a bias breaks the invariance
            self.bn = nn.BatchNorm1d(4, affine=True, track_running_stats=False)
            return 4

        def features(self, x):
            return self.global_max(torch.relu(self.bn(self.conv(x))))

    torch.manual_seed(0)
    model = WithBias((1, 20), 3, width=1).double()
    with torch.no_grad():
        model.bn.bias.fill_(0.3)
    x = torch.randn(8, 1, 20, dtype=torch.float64)
    assert check_scale_invariance(model, x) > 1e-3


def test_registry_names_and_lookup():
    assert {"convnet-si", "resnet18-si", "convnet1d-si", "mlp-si"} <= set(model_names())
    assert get_model_class("convnet-si").__name__ == "ConvNetSI"
    with pytest.raises(InputError, match="unknown model 'nope'.*convnet-si"):
        get_model_class("nope")
    with pytest.raises(InputError, match="rank"):
        build_model("convnet1d-si", input_shape=(3, 8, 8), num_classes=10)
    with pytest.raises(InputError, match="--width"):
        build_model("mlp-si", input_shape=(4,), num_classes=10, width=0)


def test_user_adds_a_model_by_subclassing_or_decorating():
    class TinySI(ScaleInvariantNet, name="tiny-test-si", description="test model"):
        def build(self, width):
            self.conv = self.conv_layer(self.in_channels, 2 * width, 3)
            self.bn = self.batch_norm(2 * width)
            return 2 * width

        def features(self, x):
            return self.global_max(torch.relu(self.bn(self.conv(x))))

    @register_model("tiny-decorated-si")
    class Decorated(TinySI):
        pass

    try:
        assert get_model_class("tiny-test-si") is TinySI
        assert get_model_class("tiny-decorated-si") is Decorated
        model = build_model("tiny-decorated-si", input_shape=(1, 12), num_classes=3, width=2, seed=0,
                            dtype=torch.float64)
        assert check_scale_invariance(model, torch.randn(6, 1, 12, dtype=torch.float64)) < 1e-7
        with pytest.raises(InputError, match="already taken"):
            @register_model("tiny-test-si")
            class Other(TinySI):
                pass
        with pytest.raises(InputError, match="not a ScaleInvariantNet"):
            register_model("x")(nn.Linear)
    finally:
        MODELS.pop("tiny-test-si", None)
        MODELS.pop("tiny-decorated-si", None)


def test_fixed_head_rejects_bad_norm():
    with pytest.raises(InputError, match="head norm"):
        FixedHead(4, 2, norm=0.0)
