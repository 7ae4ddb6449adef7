"""The backbone contract (docs/backbones.md#the-contract), run over every registered variant."""
import pytest
import torch
from torch import nn

from mmbackbones import build_backbone
from mmbackbones.models import LEVEL_STRIDES, NUM_LEVELS
from mmbackbones.models.layers import NORM_TYPES
from training_utils import CODE_PATHS, assert_checkpointing_keeps_gradients

OUT_INDEX_CHOICES = [(1, 2, 3, 4), (0, ), (0, 2, 4), (-1, ), (-3, -2)]


def build(variant, **kwargs):
    _, cls_name, base = variant
    return build_backbone(cls_name, **{**base, **kwargs})


def level_size(size: int, level: int, variant) -> int:
    """``ceil(size / stride)``; VoVNet's ``stem_stride=4`` layout (vovnet-detectron2's
    and timm's) pools stages 3-5 with unpadded ceil-mode max pools, which can give
    one less for sizes that are not multiples of 32."""
    if variant[2].get('stem_stride') != 4 or level < 2:
        return -(-size // LEVEL_STRIDES[level])
    size = -(-size // 4)
    for _ in range(level - 1):
        size = -(-(size - 3) // 2) + 1
    return size


def test_levels_channels_and_strides_match_metadata(variant):
    # 61 x 45: non-square and not divisible by 32
    h, w = 61, 45
    x = torch.randn(2, 3, h, w)
    model = build(variant, out_indices=tuple(range(NUM_LEVELS))).eval()
    with torch.no_grad():
        full = model(x)
    assert len(model.level_channels) == NUM_LEVELS
    for level, feat in enumerate(full):
        assert feat.shape == (2, model.level_channels[level], level_size(h, level, variant),
                              level_size(w, level, variant)), (level, feat.shape)
    for out_indices in OUT_INDEX_CHOICES:
        model.out_indices = out_indices  # the constructor's own check and resolution
        resolved = sorted(i % NUM_LEVELS for i in out_indices)
        assert model.out_indices == tuple(resolved)
        assert model.out_channels == tuple(model.level_channels[i] for i in resolved)
        assert model.out_strides == tuple(LEVEL_STRIDES[i] for i in resolved)
        with torch.no_grad():
            outs = model(x)
        assert len(outs) == len(resolved)
        for out, level in zip(outs, resolved):
            torch.testing.assert_close(out, full[level])


def test_frozen_stages_and_gradients(variant):
    frozen = 1
    # drop_path_rate=0: stochastic depth could drop a whole block for the batch
    model = build(variant, frozen_stages=frozen, out_indices=(4, ), drop_path_rate=0.0)
    model.train()
    for index, name in enumerate(model.level_names):
        level = getattr(model, name)
        params = list(level.parameters())
        norms = [m for m in level.modules() if isinstance(m, NORM_TYPES)]
        assert norms, f'{name} has no norm layer'
        if index <= frozen:
            assert all(not p.requires_grad for p in params), name
            assert all(not m.training for m in norms), name
        else:
            assert all(p.requires_grad for p in params), name
            assert all(m.training for m in norms), name
    model(torch.randn(2, 3, 64, 64))[0].sum().backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


@pytest.mark.parametrize('name', ['Darknet-19', 'VoVNet-19-slim', 'ResNet-18', 'MobileNetV2'])
@pytest.mark.parametrize('frozen', [0, 2, 4])
def test_frozen_stages_covers_exactly_levels_up_to_k(name, frozen):
    model = build_backbone(name, frozen_stages=frozen)
    model.train()
    for index, level in enumerate(model.level_names):
        grads = {p.requires_grad for p in getattr(model, level).parameters()}
        assert grads == {index > frozen}, (level, grads)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == sum(
        p.numel() for level in model.level_names[frozen + 1:]
        for p in getattr(model, level).parameters())


def test_norm_eval_keeps_every_norm_in_eval(variant):
    model = build(variant, norm_eval=True)
    model.train()
    norms = [m for m in model.modules() if isinstance(m, NORM_TYPES)]
    assert norms and all(not m.training for m in norms)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize('name', ['Darknet-19', 'CSPDarknet-19', 'VoVNet-19-slim'])
@pytest.mark.parametrize('norm_cfg', [
    dict(type='BN', momentum=0.03), dict(type='SyncBN'), dict(type='GN', num_groups=8),
    dict(type='FrozenBN')
])
def test_norm_types(name, norm_cfg):
    from torchvision.ops.misc import FrozenBatchNorm2d
    expected = {'BN': nn.BatchNorm2d, 'SyncBN': nn.SyncBatchNorm, 'GN': nn.GroupNorm,
                'FrozenBN': FrozenBatchNorm2d}[norm_cfg['type']]
    model = build_backbone(name, norm_cfg=norm_cfg).eval()
    norms = [m for m in model.modules() if isinstance(m, NORM_TYPES)]
    assert norms and all(type(m) is expected for m in norms)
    out = model(torch.randn(1, 3, 40, 40))
    assert all(torch.isfinite(o).all() for o in out)


@pytest.mark.parametrize('act_cfg,expected', [
    (dict(type='LeakyReLU', negative_slope=0.1), nn.LeakyReLU), (dict(type='SiLU'), nn.SiLU),
    (None, nn.Identity)])
def test_act_cfg(act_cfg, expected):
    model = build_backbone('Darknet-19', act_cfg=act_cfg)
    assert type(model.stem[0].act) is expected


def test_in_channels():
    model = build_backbone('VoVNet-19-slim', in_channels=1).eval()
    assert model(torch.randn(1, 1, 32, 32))[-1].shape == (1, 512, 1, 1)


@pytest.mark.parametrize('name', ['Darknet-19', 'CSPDarknet-19', 'VoVNet-39'])
def test_with_cp_and_drop_path_keep_gradients(name):
    torch.manual_seed(0)
    plain = build_backbone(name)
    x = torch.randn(2, 3, 64, 64)
    assert_checkpointing_keeps_gradients(plain, build_backbone(name, with_cp=True), x)
    dropped = build_backbone(name, drop_path_rate=0.2)
    rates = [m.drop_prob for m in dropped.modules() if type(m).__name__ == 'DropPath']
    assert rates and max(rates) == pytest.approx(0.2) and min(rates) >= 0
    dropped.eval()
    dropped.load_state_dict(plain.state_dict())
    plain.eval()
    with torch.no_grad():  # drop path is identity at inference
        torch.testing.assert_close(dropped(x), plain(x))


def test_vovnet_v1_has_no_residual_nor_ese():
    from mmbackbones.models.vovnet import OSAModule
    v1 = build_backbone('VoVNet', depth=39, residual=False, ese=False)
    modules = [m for m in v1.modules() if isinstance(m, OSAModule)]
    assert modules and not any(m.residual or isinstance(m.ese, nn.Module) and
                               not isinstance(m.ese, nn.Identity) for m in modules)
    v2 = build_backbone('VoVNet', depth=39)
    modules = [m for m in v2.modules() if isinstance(m, OSAModule)]
    assert all(not isinstance(m.ese, nn.Identity) for m in modules)  # eSE everywhere
    # residual exactly where input and output channels agree: after each stage's first
    assert [m.residual for m in modules] == [False, False, False, True, False, True]
    assert isinstance(v2.stage2[0], nn.MaxPool2d)


# -- bad input fails early and names the valid choices ---------------------------
@pytest.mark.parametrize('kwargs,pattern', [
    (dict(depth=42), r"unknown VoVNet depth 42; valid: \[19, 39, 57, 99\]"),
    (dict(out_indices=(1, 5)), r'has 5, out of range .*valid: -5\.\.4'),
    (dict(out_indices=(-6, )), r'has -6, out of range'),
    (dict(out_indices=(1, -4)), r'names a level more than once'),
    (dict(out_indices=()), r'non-empty'),
    (dict(frozen_stages=5), r'frozen_stages=5 is out of range; valid: -1'),
    (dict(frozen_stages=-2), r'frozen_stages=-2'),
    (dict(norm_cfg=dict(type='BatchNorm')), r"unknown norm type 'BatchNorm'.*'BN'.*'GN'"),
    (dict(norm_cfg=dict(type='GN')), r'num_groups'),
    (dict(act_cfg=dict(type='Relu')), r"unknown activation type 'Relu'.*'ReLU'"),
    (dict(residual=False, drop_path_rate=0.1), r'residual=False \(V1\) has no residual connections'),
])
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        build_backbone('VoVNet', **kwargs)


def test_unknown_darknet_depth_and_name():
    with pytest.raises(ValueError, match=r'unknown CSPDarknet depth 21; valid: \[19, 53\]'):
        build_backbone('CSPDarknet', depth=21)
    with pytest.raises(ValueError, match=r"unknown backbone 'VovNet'.*'VoVNet'"):
        build_backbone('VovNet')


def test_wrong_input_channels_at_forward():
    model = build_backbone('Darknet-19')
    with pytest.raises(ValueError, match=r'expects an \(N, 3, H, W\) input, got shape '
                                         r'\(1, 1, 32, 32\)'):
        model(torch.randn(1, 1, 32, 32))


@pytest.mark.parametrize('name', CODE_PATHS)
def test_every_code_path_traces_with_fx(name):
    """torch.fx (quantization, distillation tooling) and torchvision's
    create_feature_extractor; the input check stays in the traced graph. Per code
    path: a family's depths trace the same modules (the traces took 36 s for all
    43 variants)."""
    from torchvision.models.feature_extraction import create_feature_extractor
    model = build_backbone(name, out_indices=(1, 2, 3, 4)).eval()
    x = torch.randn(1, 3, 64, 64)
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        for got, want in zip(traced(x), model(x)):
            assert torch.equal(got, want)
    with pytest.raises(ValueError, match='expects an'):
        traced(torch.randn(1, 1, 64, 64))
    extractor = create_feature_extractor(model, return_nodes={'stage3': 'c3', 'stage5': 'c5'})
    with torch.no_grad():
        feats = extractor(x)
        assert torch.equal(feats['c3'], model(x)[1]) and torch.equal(feats['c5'], model(x)[3])
    with pytest.raises(ValueError, match='expects an'):
        extractor(torch.randn(1, 1, 64, 64))
