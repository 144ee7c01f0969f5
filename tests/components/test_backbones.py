"""The timm backbone: pass-through names, pooled features, CIFAR stem and MoCo v3 ViT surgery."""

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may download; set before timm imports the hub client

import pytest
import timm
import torch
from timm.layers import DropPath
from torch import nn

from sslcore.components.backbone_configs import sslcore_register_backbones
from sslcore.components.backbones import TimmBackboneConfig, build_timm_backbone, convert_sync_batchnorm
from sslcore.config import structure
from sslcore.errors import SslcoreError
from sslcore.registry import Registry


def vit(**options) -> nn.Module:
    return build_timm_backbone(TimmBackboneConfig(name="vit_tiny_patch16_224", img_size=32, **options))


def test_registered_as_timm_and_built_from_a_recipe_table():
    registry = Registry("backbone")
    sslcore_register_backbones(registry)
    entry = registry.get("timm")
    config = structure({"name": "resnet18", "cifar_stem": True}, entry.config, where="recipe.toml", path="backbone")
    assert config == TimmBackboneConfig(name="resnet18", cifar_stem=True)
    model = entry.build(config)
    assert model.num_features == 512


def test_resnet_pooled_features():
    torch.manual_seed(0)
    model = build_timm_backbone(TimmBackboneConfig(name="resnet18"))
    assert model.num_features == 512
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 512)


@pytest.mark.parametrize(("zero_init_last", "expected"), [(None, 0.0), (True, 0.0), (False, 1.0)])
def test_zero_init_last_sets_the_last_batchnorm_scale_of_every_block(zero_init_last, expected):
    model = build_timm_backbone(TimmBackboneConfig(name="resnet18", zero_init_last=zero_init_last))
    last_norms = [block.bn2.weight for layer in (model.layer1, model.layer4) for block in layer]
    assert all(torch.all(weight == expected) for weight in last_norms)
    assert torch.all(model.layer1[0].bn1.weight == 1.0)


def test_zero_init_last_on_a_model_without_it_is_a_clear_error():
    with pytest.raises(SslcoreError, match="timm could not build 'vit_tiny_patch16_224'"):
        vit(zero_init_last=False)


def test_num_features_is_the_pooled_width_when_a_model_keeps_a_pre_logits_layer():
    torch.manual_seed(0)
    model = build_timm_backbone(TimmBackboneConfig(name="mobilenetv3_small_050")).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert model.num_features == out.shape[1] == 1024  # timm's own num_features is the 288-wide pre-head width


def test_state_dict_loads_back_into_a_plain_timm_model():
    model = vit(sincos_pos_embed=True, frozen_patch_embed=True)
    plain = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(plain.eval()(x), model.eval()(x))


def test_cifar_stem_replaces_first_conv_and_maxpool():
    torch.manual_seed(0)
    standard = build_timm_backbone(TimmBackboneConfig(name="resnet18"))
    cifar = build_timm_backbone(TimmBackboneConfig(name="resnet18", cifar_stem=True))
    conv = cifar.conv1
    assert isinstance(conv, nn.Conv2d)
    assert (conv.in_channels, conv.out_channels) == (3, 64)
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1) and conv.bias is None
    assert isinstance(cifar.maxpool, nn.Identity)
    x = torch.randn(2, 3, 32, 32)
    assert standard.forward_features(x).shape[-2:] == (1, 1)  # 32 / 32
    assert cifar.forward_features(x).shape[-2:] == (4, 4)  # 32 / 8: the stem no longer downsamples
    assert cifar(x).shape == (2, 512)


def test_cifar_stem_follows_timm_first_conv_of_a_deep_stem():
    model = build_timm_backbone(TimmBackboneConfig(name="resnet10t", cifar_stem=True))
    first = model.conv1[0]
    assert first.kernel_size == (3, 3) and first.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape[-2:] == (4, 4)


def test_in_chans_reaches_timm_and_the_cifar_stem_keeps_it():
    model = build_timm_backbone(TimmBackboneConfig(name="resnet10t", in_chans=2, cifar_stem=True))
    assert model.conv1[0].in_channels == 2
    assert model(torch.randn(2, 2, 16, 16)).shape == (2, model.num_features)


def test_cifar_stem_refused_for_a_model_without_resnet_stem():
    with pytest.raises(SslcoreError, match="cifar_stem needs a ResNet-style stem"):
        vit(cifar_stem=True)  # has timm first_conv (patch_embed.proj) but no max-pool


def test_unknown_name_lists_close_timm_names():
    with pytest.raises(SslcoreError, match="unknown timm model 'resnt18'") as error:
        build_timm_backbone(TimmBackboneConfig(name="resnt18"))
    assert "'resnet18'" in str(error.value)


def test_pretrained_tags_pass_through():
    model = build_timm_backbone(TimmBackboneConfig(name="resnet18.a1_in1k"))
    assert model.num_features == 512


def test_option_timm_does_not_take_is_a_clear_error():
    with pytest.raises(SslcoreError, match="timm could not build 'resnet18'.*img_size"):
        build_timm_backbone(TimmBackboneConfig(name="resnet18", img_size=32))


def test_vit_options_reach_timm():
    model = vit(num_heads=6, global_pool="avg", drop_path_rate=0.1)
    assert model.patch_embed.grid_size == (2, 2)
    assert model.blocks[0].attn.num_heads == 6
    assert model.global_pool == "avg"
    rates = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    assert rates and math.isclose(max(rates), 0.1, rel_tol=1e-6)  # stochastic depth increases linearly to the rate
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, model.num_features) == (2, 192)


def test_no_drop_path_by_default():
    assert not any(isinstance(m, DropPath) for m in vit().modules())


def test_frozen_patch_embed_gets_no_gradient():
    torch.manual_seed(0)
    model = vit(frozen_patch_embed=True)
    proj = model.patch_embed.proj
    assert not proj.weight.requires_grad and not proj.bias.requires_grad
    # MoCo v3 vits.py: uniform(-b, b) with b = sqrt(6 / (3 * 16 * 16 + embed_dim)), zero bias
    bound = math.sqrt(6.0 / (3 * 16 * 16 + 192))
    assert proj.weight.abs().max() <= bound and proj.weight.abs().max() > 0.9 * bound
    assert torch.count_nonzero(proj.bias) == 0
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert proj.weight.grad is None and proj.bias.grad is None
    assert model.blocks[0].attn.qkv.weight.grad is not None


def test_sincos_pos_embed_is_fixed_moco_v3_table():
    torch.manual_seed(0)
    model = build_timm_backbone(TimmBackboneConfig(name="vit_tiny_patch16_224", img_size=64, sincos_pos_embed=True))
    dim, grid = 192, 4
    quarter = dim // 4
    expected = torch.zeros(1 + grid * grid, dim)  # class token first, with a zero embedding
    for row in range(grid):
        for col in range(grid):
            token = 1 + row * grid + col  # patches in row-major order
            for d in range(quarter):
                omega = 1.0 / 10000.0 ** (d / quarter)
                expected[token, d] = math.sin(row * omega)
                expected[token, quarter + d] = math.cos(row * omega)
                expected[token, 2 * quarter + d] = math.sin(col * omega)
                expected[token, 3 * quarter + d] = math.cos(col * omega)
    assert torch.allclose(model.pos_embed[0], expected, atol=1e-6)
    assert not model.pos_embed.requires_grad
    before = model.pos_embed.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    optimizer.step()
    assert model.pos_embed.grad is None
    assert torch.equal(model.pos_embed, before)


def test_vit_surgery_refused_for_a_cnn():
    with pytest.raises(SslcoreError, match="frozen_patch_embed needs a ViT"):
        build_timm_backbone(TimmBackboneConfig(name="resnet18", frozen_patch_embed=True))
    with pytest.raises(SslcoreError, match="sincos_pos_embed needs a ViT"):
        build_timm_backbone(TimmBackboneConfig(name="resnet18", sincos_pos_embed=True))


def test_convert_sync_batchnorm():
    model = convert_sync_batchnorm(build_timm_backbone(TimmBackboneConfig(name="resnet18")))
    kinds = {type(m) for m in model.modules()}
    assert nn.SyncBatchNorm in kinds and nn.BatchNorm2d not in kinds


@pytest.mark.parametrize(
    "options", [{"drop_path_rate": 1.0}, {"drop_path_rate": -0.1}, {"img_size": 0}, {"num_heads": 0}]
)
def test_config_rejects_out_of_range_values(options):
    with pytest.raises(ValueError):
        TimmBackboneConfig(name="vit_tiny_patch16_224", **options)
