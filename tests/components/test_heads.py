"""Heads against the official code: layer types, order and biases; SwAV prototypes; the DINO head."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sslcore.components.head_configs import sslcore_register_heads
from sslcore.components.heads import (
    DINOHeadConfig,
    MLPHeadConfig,
    PrototypesConfig,
    build_dino_head,
    build_mlp_head,
    build_prototypes,
)
from sslcore.config import structure
from sslcore.registry import Registry

# ---- the official heads, written out from the authors' code ------------------------------------------------


def moco_v3_mlp(num_layers, input_dim, mlp_dim, output_dim):
    """facebookresearch/moco-v3 moco/builder.py ``_build_mlp``."""
    mlp = []
    for layer in range(num_layers):
        dim1 = input_dim if layer == 0 else mlp_dim
        dim2 = output_dim if layer == num_layers - 1 else mlp_dim
        mlp.append(nn.Linear(dim1, dim2, bias=False))
        if layer < num_layers - 1:
            mlp += [nn.BatchNorm1d(dim2), nn.ReLU(inplace=True)]
        else:
            mlp.append(nn.BatchNorm1d(dim2, affine=False))
    return nn.Sequential(*mlp)


def simsiam_projector(prev_dim, dim):
    """facebookresearch/simsiam simsiam/builder.py: the last Linear is the ResNet fc, bias kept but frozen."""
    fc = nn.Linear(prev_dim, dim)
    fc.bias.requires_grad = False
    return nn.Sequential(
        nn.Linear(prev_dim, prev_dim, bias=False), nn.BatchNorm1d(prev_dim), nn.ReLU(inplace=True),
        nn.Linear(prev_dim, prev_dim, bias=False), nn.BatchNorm1d(prev_dim), nn.ReLU(inplace=True),
        fc, nn.BatchNorm1d(dim, affine=False),
    )  # fmt: skip


def simsiam_predictor(dim, pred_dim):
    return nn.Sequential(
        nn.Linear(dim, pred_dim, bias=False), nn.BatchNorm1d(pred_dim), nn.ReLU(inplace=True), nn.Linear(pred_dim, dim)
    )


def byol_mlp(in_dim, hidden_size, output_size):
    """deepmind-research byol/utils/networks.py ``MLP``: Linear(bias) -> BN -> ReLU -> Linear(no bias)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_size),
        nn.BatchNorm1d(hidden_size),
        nn.ReLU(),
        nn.Linear(hidden_size, output_size, bias=False),
    )


def moco_v2_mlp(dim_mlp, dim):
    """facebookresearch/moco moco/builder.py (``mlp=True``)."""
    return nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), nn.Linear(dim_mlp, dim))


def leaves(module):
    """(type, widths, bias?, BN affine?) of each leaf layer, in order."""
    rows = []
    for m in module.modules():
        if isinstance(m, nn.Linear):
            rows.append(("Linear", m.in_features, m.out_features, m.bias is not None))
        elif isinstance(m, nn.BatchNorm1d):
            rows.append(("BatchNorm1d", m.num_features, m.affine))
        elif isinstance(m, (nn.ReLU, nn.GELU)):
            rows.append((type(m).__name__,))
    return rows


def copy_weights(source, target):
    """Copy Linear / BN weights leaf by leaf (same order); biases only where both have one."""
    pairs = zip(
        [m for m in source.modules() if isinstance(m, (nn.Linear, nn.BatchNorm1d))],
        [m for m in target.modules() if isinstance(m, (nn.Linear, nn.BatchNorm1d))],
        strict=True,
    )
    with torch.no_grad():
        for src, dst in pairs:
            if src.weight is not None:
                dst.weight.copy_(src.weight)
            if src.bias is not None and dst.bias is not None:
                dst.bias.copy_(src.bias)


def assert_same_function(ours, official, in_dim):
    torch.manual_seed(1)
    copy_weights(ours, official)
    x = torch.randn(8, in_dim)
    assert torch.allclose(ours.train()(x), official.train()(x), atol=1e-5)


def mlp(in_dim, **fields):
    return build_mlp_head(MLPHeadConfig(**fields), in_dim)


# ---- MLP heads --------------------------------------------------------------------------------------------


def test_moco_v3_projector_and_predictor_match_official():
    torch.manual_seed(0)
    projector = mlp(32, num_layers=3, hidden_dim=64, out_dim=16, batch_norm=True, last_batch_norm=True)
    official = moco_v3_mlp(3, 32, 64, 16)
    assert leaves(projector) == leaves(official)
    assert_same_function(projector, official, 32)
    predictor = mlp(16, num_layers=2, hidden_dim=64, out_dim=16, batch_norm=True, last_batch_norm=True)
    assert leaves(predictor) == leaves(moco_v3_mlp(2, 16, 64, 16))
    assert projector.out_dim == predictor.out_dim == 16


def test_simsiam_projector_matches_official_up_to_the_bias_bn_cancels():
    torch.manual_seed(0)
    projector = mlp(32, num_layers=3, hidden_dim=32, out_dim=48, batch_norm=True, last_batch_norm=True)
    official = simsiam_projector(32, 48)
    expected = leaves(official)
    expected[6] = ("Linear", 32, 48, False)  # official keeps the fc bias frozen before an affine-free BN
    assert leaves(projector) == expected
    assert_same_function(projector, official, 32)  # that bias is cancelled by the BN's mean subtraction


def test_simsiam_predictor_matches_official():
    torch.manual_seed(0)
    predictor = mlp(48, num_layers=2, hidden_dim=12, out_dim=48, batch_norm=True)
    official = simsiam_predictor(48, 12)
    assert leaves(predictor) == leaves(official)
    assert_same_function(predictor, official, 48)


def test_byol_mlp_matches_official_up_to_the_bias_bn_cancels():
    torch.manual_seed(0)
    head = mlp(32, num_layers=2, hidden_dim=64, out_dim=16, batch_norm=True, bias=False)
    official = byol_mlp(32, 64, 16)
    expected = leaves(official)
    expected[0] = ("Linear", 32, 64, False)  # official hidden bias is followed by BN, which cancels it
    assert leaves(head) == expected
    assert_same_function(head, official, 32)


def test_moco_v1_and_v2_heads_match_official():
    torch.manual_seed(0)
    v1 = mlp(32, num_layers=1, out_dim=8)
    assert leaves(v1) == [("Linear", 32, 8, True)]
    v2 = mlp(32, num_layers=2, hidden_dim=32, out_dim=8)
    official = moco_v2_mlp(32, 8)
    assert leaves(v2) == leaves(official)
    assert_same_function(v2, official, 32)


def test_simclr_v2_projector_output_bn_scales_without_shift():
    torch.manual_seed(0)
    head = mlp(
        16, num_layers=3, hidden_dim=16, out_dim=8, batch_norm=True,
        last_batch_norm=True, last_batch_norm_affine=True, last_batch_norm_center=False,
    )  # fmt: skip
    # google-research/simclr tf2/model.py ProjectionHead: LinearLayer(use_bias, use_bn=True) ->
    # Dense(use_bias=False) + BN(center=use_bias); ReLU on middle layers; last layer use_bias=False.
    assert leaves(head) == [
        ("Linear", 16, 16, False), ("BatchNorm1d", 16, True), ("ReLU",),
        ("Linear", 16, 16, False), ("BatchNorm1d", 16, True), ("ReLU",),
        ("Linear", 16, 8, False), ("BatchNorm1d", 8, True),
    ]  # fmt: skip
    last_bn = head.layers[2][1]
    assert last_bn.weight.requires_grad and not last_bn.bias.requires_grad
    optimizer = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=1.0)
    (head(torch.randn(4, 16)) * torch.randn(4, 8)).sum().backward()
    optimizer.step()
    assert torch.count_nonzero(last_bn.bias) == 0 and last_bn.weight.grad is not None


def test_middle_layer_output_for_simclr_v2_fine_tuning():
    torch.manual_seed(0)
    head = mlp(16, num_layers=3, hidden_dim=24, out_dim=8, batch_norm=True, last_batch_norm=True).train()
    x = torch.randn(6, 16)
    first = nn.Sequential(*head.layers[:1])(x)
    linear, norm = head.layers[0][0], head.layers[0][1]
    h = x @ linear.weight.T
    expected = torch.relu((h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + norm.eps) * norm.weight + norm.bias)
    assert first.shape == (6, 24)
    assert torch.allclose(first, expected, atol=1e-5)
    assert torch.allclose(nn.Sequential(*head.layers)(x), head(x))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"num_layers": 2, "out_dim": 8}, "hidden_dim is required"),
        ({"num_layers": 1, "out_dim": 8, "hidden_dim": 4}, "no hidden layer"),
        ({"num_layers": 1, "out_dim": 8, "batch_norm": True}, "use last_batch_norm"),
        ({"num_layers": 1, "out_dim": 8, "last_batch_norm_affine": True}, "needs last_batch_norm"),
        ({"num_layers": 1, "out_dim": 8, "last_batch_norm": True, "last_batch_norm_center": False}, "affine"),
        ({"num_layers": 0, "out_dim": 8}, "num_layers"),
        ({"num_layers": 1, "out_dim": 0}, "out_dim"),
    ],
)
def test_mlp_config_rejects_inconsistent_fields(fields, message):
    with pytest.raises(ValueError, match=message):
        MLPHeadConfig(**fields)


def test_bad_input_width_is_refused():
    with pytest.raises(ValueError, match="in_dim"):
        mlp(0, num_layers=1, out_dim=4)


# ---- SwAV prototypes --------------------------------------------------------------------------------------


def test_prototypes_score_and_normalize():
    torch.manual_seed(0)
    prototypes = build_prototypes(PrototypesConfig(num_prototypes=10), 6)
    assert prototypes.out_dim == 10 and prototypes.bias is None and prototypes.weight.shape == (10, 6)
    assert PrototypesConfig().num_prototypes == 3000
    with torch.no_grad():
        prototypes.weight.mul_(5.0)
    prototypes.normalize_()
    norms = torch.linalg.vector_norm(prototypes.weight, dim=1)
    assert torch.allclose(norms, torch.ones(10), atol=1e-6)
    assert prototypes.weight.is_leaf and prototypes.weight.requires_grad and prototypes.weight.grad_fn is None
    z = F.normalize(torch.randn(3, 6), dim=1)
    scores = prototypes(z)
    for i in range(3):
        for k in range(10):
            expected = sum(z[i, d] * prototypes.weight[k, d] for d in range(6))
            assert torch.isclose(scores[i, k], expected, atol=1e-6)


# ---- DINO head --------------------------------------------------------------------------------------------


def dino_official_leaves(in_dim, hidden_dim, bottleneck_dim, num_layers, use_bn):
    """facebookresearch/dino vision_transformer.py ``DINOHead.mlp`` (Linears keep their bias even before BN)."""
    rows = [("Linear", in_dim, hidden_dim, True)] + ([("BatchNorm1d", hidden_dim, True)] if use_bn else [])
    rows.append(("GELU",))
    for _ in range(num_layers - 2):
        rows.append(("Linear", hidden_dim, hidden_dim, True))
        rows += [("BatchNorm1d", hidden_dim, True)] if use_bn else []
        rows.append(("GELU",))
    return rows + [("Linear", hidden_dim, bottleneck_dim, True)]


@pytest.mark.parametrize("use_bn", [False, True])
def test_dino_head_structure_matches_official(use_bn):
    head = build_dino_head(DINOHeadConfig(out_dim=50, hidden_dim=32, bottleneck_dim=8, use_bn=use_bn), 16)
    assert leaves(head.mlp) == dino_official_leaves(16, 32, 8, 3, use_bn)
    assert head.out_dim == 50
    assert isinstance(head.last_layer, nn.Linear) and head.last_layer.bias is None
    assert head.last_layer.weight.shape == (50, 8)
    single = build_dino_head(DINOHeadConfig(out_dim=50, num_layers=1, bottleneck_dim=8), 16)
    assert leaves(single.mlp) == [("Linear", 16, 8, True)]


def test_dino_defaults_are_the_paper_ones():
    config = DINOHeadConfig()
    assert (config.out_dim, config.num_layers, config.hidden_dim, config.bottleneck_dim) == (65536, 3, 2048, 256)
    assert config.norm_last_layer and not config.use_bn


def test_dino_head_forward_is_weight_normalized_projection_of_normalized_bottleneck():
    torch.manual_seed(0)
    head = build_dino_head(DINOHeadConfig(out_dim=40, hidden_dim=32, bottleneck_dim=8), 16)
    magnitude = head.last_layer.parametrizations.weight.original0
    direction = head.last_layer.parametrizations.weight.original1
    assert magnitude.shape == (40, 1) and torch.equal(magnitude, torch.ones(40, 1))
    x = torch.randn(5, 16)
    z = head.mlp(x)
    z = z / z.norm(dim=1, keepdim=True)
    w = direction / direction.norm(dim=1, keepdim=True)  # g = 1: unit-norm rows
    assert torch.allclose(head(x), z @ w.T, atol=1e-5)


def test_dino_norm_last_layer_freezes_g():
    torch.manual_seed(0)
    frozen = build_dino_head(DINOHeadConfig(out_dim=40, hidden_dim=32, bottleneck_dim=8), 16)
    free = build_dino_head(DINOHeadConfig(out_dim=40, hidden_dim=32, bottleneck_dim=8, norm_last_layer=False), 16)
    for head, g_trains in ((frozen, False), (free, True)):
        head(torch.randn(4, 16)).pow(2).sum().backward()
        weight = head.last_layer.parametrizations.weight
        assert weight.original0.requires_grad is g_trains
        assert (weight.original0.grad is not None) is g_trains
        assert weight.original1.grad is not None
    names = [name for name, _ in frozen.named_parameters() if name.startswith("last_layer.")]
    assert len(names) == 2  # what DINO's cancel_gradients_last_layer zeroes in the first epoch


def test_dino_init_is_official():
    torch.manual_seed(0)
    head = build_dino_head(DINOHeadConfig(out_dim=64, hidden_dim=512, bottleneck_dim=16), 384)
    first = head.mlp[0]
    assert abs(first.weight.std().item() - 0.02) < 0.001  # trunc_normal(std=.02)
    assert torch.count_nonzero(first.bias) == 0
    # the last layer is built after the init, so it keeps PyTorch's Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    direction = head.last_layer.parametrizations.weight.original1
    assert direction.abs().max() <= 16**-0.5 and direction.std() > 0.1


def test_dino_head_deep_copies_for_a_teacher():
    torch.manual_seed(0)
    student = build_dino_head(DINOHeadConfig(out_dim=40, hidden_dim=32, bottleneck_dim=8), 16)
    teacher = copy.deepcopy(student)
    x = torch.randn(3, 16)
    assert torch.allclose(teacher(x), student(x))
    g_teacher = teacher.last_layer.parametrizations.weight.original0
    assert g_teacher is not student.last_layer.parametrizations.weight.original0


# ---- registration -----------------------------------------------------------------------------------------


def test_heads_registered_and_built_from_recipe_tables():
    registry = Registry("head")
    sslcore_register_heads(registry)
    assert registry.names() == ["dino", "mlp", "prototypes"]
    tables = {
        "mlp": {"num_layers": 2, "hidden_dim": 32, "out_dim": 8, "batch_norm": True},
        "prototypes": {"num_prototypes": 30},
        "dino": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 8},
    }
    for name, table in tables.items():
        entry = registry.get(name)
        config = structure(table, entry.config, where="recipe.toml", path="head")
        head = entry.build(config, in_dim=16)
        assert head(torch.randn(2, 16)).shape == (2, head.out_dim)
        assert head.out_dim == {"mlp": 8, "prototypes": 30, "dino": 64}[name]
