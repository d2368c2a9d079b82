"""Scale-invariant groups: every registered model is invariant group by group, and the test can fail."""

from __future__ import annotations

import pytest
import torch
from thermonet.models import (
    ScaleInvariantNet,
    build_model,
    check_group_invariance,
    model_names,
    scale_groups_of,
)
from torch import nn

from thermonet.engines.network.functional import FlatModel, flatten_parameters
from thermonet.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")

#: An input shape and width for every registered model (a new model must be added here).
SHAPES = {
    "convnet-si": [((1, 40), 2), ((3, 16, 16), 1)],
    "resnet18-si": [((3, 16, 16), 1), ((1, 24), 1)],
    "convnet1d-si": [((1, 40), 2)],
    "mlp-si": [((1, 40), 1)],
}


def test_every_registered_model_has_a_shape_here():
    shipped = {n for n in model_names() if ScaleInvariantNet.get(n).__module__.startswith("thermonet.models")}
    assert set(SHAPES) >= shipped


def test_training_refuses_a_model_whose_declared_group_is_not_invariant(tmp_path):
    """A stream declared as separate groups (the ResNet without its override) is refused before training."""
    from thermonet.models import ResNet18SI
    from thermonet.runs import train

    class SplitStream(ResNet18SI, name="test-split-stream-si"):
        def group_parameters(self):
            return ScaleInvariantNet.group_parameters(self)

    with pytest.raises(InputError, match="scaling one scale group alone changes the outputs: conv1 .*layers.0.0.conv2"):
        train(tmp_path / "r.zarr", model="test-split-stream-si", width=1, dataset="teacher:n_train=64,n_test=8,dim=12",
              protocol="fixed-lr", grid={"lr": [0.1], "wd": [0.01]}, seeds=[0], steps=20, queue_size=4,
              grad_samples=2, batch_size=8)


@pytest.mark.parametrize("name,shape,width", [(n, s, w) for n, cases in SHAPES.items() for s, w in cases])
def test_each_group_alone_is_scale_invariant(name, shape, width):
    model = build_model(name, input_shape=shape, num_classes=5, width=width, seed=3, dtype=torch.float64)
    x = torch.randn(12, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    groups = model.scale_groups()
    assert len(groups) >= 2
    deviation = check_group_invariance(model, x, scales=(0.2, 5.0))
    assert set(deviation) == {g.name for g in groups}
    assert max(deviation.values()) < 1e-6, deviation
    # the groups partition the trained parameters, in flattening order
    trained = [n for n, _ in model.trained_parameters()]
    listed = [n for g in groups for n in g.parameters]
    assert sorted(listed) == sorted(trained) and len(set(listed)) == len(listed)
    assert sum(g.size for g in groups) == model.num_trained()
    firsts = [trained.index(g.parameters[0]) for g in groups]
    assert firsts == sorted(firsts)


def test_default_groups_are_named_by_module_path():
    model = build_model("mlp-si", input_shape=(1, 40), num_classes=10, width=1, seed=0)
    groups = model.scale_groups()
    assert [(g.name, g.size) for g in groups] == [("layers.1", 40 * 16), ("layers.4", 16 * 16)]


def test_the_resnet_needs_its_stream_groups():
    """One group per tensor (the default) is wrong for a residual stream: the check catches it."""
    model = build_model("resnet18-si", input_shape=(1, 24), num_classes=3, width=1, seed=0, dtype=torch.float64)
    x = torch.randn(10, 1, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    trained = model.trained_parameters()
    wrong = ScaleInvariantNet.group_parameters(model)  # the default partition
    named = dict(model.named_parameters())
    from thermonet.models.registry import _output_change

    with torch.no_grad():
        changes = {g: _output_change(model, x, [named[n] for n in ps], (0.2, 5.0)) for g, ps in wrong.items()}
    assert changes["layers.0.0.conv2"] > 1e-3  # a branch of the stream alone is not invariant
    assert changes["layers.0.0.conv1"] < 1e-6  # a first convolution (followed by BN) is
    assert len(wrong) == len(trained)


class _Probe(ScaleInvariantNet):  # not registered: no name
    input_ranks = (2,)
    bias = False
    affine = False

    def build(self, width):
        self.conv1 = nn.Conv1d(self.in_channels, 4, 3, bias=self.bias)
        self.bn1 = nn.BatchNorm1d(4, eps=1e-12, affine=self.affine, track_running_stats=False)
        self.conv2 = nn.Conv1d(4, 4, 3, bias=False)
        self.bn2 = nn.BatchNorm1d(4, eps=1e-12, affine=False, track_running_stats=False)
        return 4

    def features(self, x):
        # a bias before a BN is removed by it, so the bias probe puts the ReLU first; an
        # affine BN followed by a linear map and a BN is harmless, so the affine probe has a ReLU after it
        h = self.bn1(torch.relu(self.conv1(x))) if self.bias else torch.relu(self.bn1(self.conv1(x)))
        return self.global_max(torch.relu(self.bn2(self.conv2(h))))


@pytest.mark.parametrize("bias,affine,broken", [(False, False, None), (True, False, "conv1"),
                                                (False, True, "bn1")])
def test_a_bias_or_an_affine_batchnorm_breaks_a_group(bias, affine, broken):
    cls = type("P", (_Probe,), {"bias": bias, "affine": affine})
    torch.manual_seed(0)
    model = cls((1, 20), 3, width=1).double()
    if affine:
        with torch.no_grad():
            model.bn1.bias.fill_(0.3)
    x = torch.randn(8, 1, 20, dtype=torch.float64)
    deviation = check_group_invariance(model, x)
    if broken is None:
        assert max(deviation.values()) < 1e-6
    else:
        assert deviation[broken] > 1e-3, deviation


def test_bad_group_declarations_are_refused():
    def make(groups):
        cls = type("Bad", (_Probe,), {"group_parameters": lambda self: groups})
        return cls((1, 20), 3, width=1)

    with pytest.raises(InputError, match="two scale groups"):
        make({"a": ["conv1.weight"], "b": ["conv1.weight", "conv2.weight"]}).scale_groups()
    with pytest.raises(InputError, match="belong to no scale group"):
        make({"a": ["conv1.weight"]}).scale_groups()
    with pytest.raises(InputError, match="not a trained parameter"):
        make({"a": ["conv1.weight", "conv2.weight", "head.weight"]}).scale_groups()


def test_flat_model_group_sums_and_columns():
    model = build_model("resnet18-si", input_shape=(1, 24), num_classes=3, width=1, seed=0, dtype=torch.float64)
    flat = FlatModel(model)
    w = flatten_parameters(model)
    assert flat.group_names == tuple(g.name for g in scale_groups_of(model))
    sums = flat.group_sums(torch.stack([w**2, 2 * w**2]))
    named = dict(model.named_parameters())
    for i, group in enumerate(flat.groups):
        expected = sum(float((named[n].detach() ** 2).sum()) for n in group.parameters)
        assert sums[0, i].item() == pytest.approx(expected, rel=1e-12)
        assert sums[1, i].item() == pytest.approx(2 * expected, rel=1e-12)
    columns = flat.group_columns()
    assert sorted(torch.cat(columns).tolist()) == list(range(flat.dim))
    assert [float((w[c] ** 2).sum()) for c in columns] == pytest.approx(sums[0].tolist(), rel=1e-12)
    assert [len(c) for c in columns] == list(flat.group_sizes)
