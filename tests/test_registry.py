"""Registration: our scope, unscoped names in MMDetection/MMPretrain configs, and
no shadowing of names other OpenMMLab packages own."""
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import DefaultScope

import mmbackbones
from mmbackbones.registry import MODELS, RESERVED_NAMES


def scoped_build(scope: str, cfg: dict):
    """Build ``cfg`` from ``scope``'s MODELS registry, as that package's runner does."""
    registry = {'mmdet': 'mmdet.registry', 'mmpretrain': 'mmpretrain.registry'}[scope]
    models = __import__(registry, fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return models.build(cfg)


@pytest.fixture(scope='module')
def all_registered():
    from mmdet.utils import register_all_modules as register_mmdet
    from mmpretrain.utils import register_all_modules as register_mmpretrain
    register_mmdet(init_default_scope=False)
    register_mmpretrain(init_default_scope=False)
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as CLS
    return DET, CLS


def write_config(tmp_path, body: str) -> Config:
    path = tmp_path / 'cfg.py'
    path.write_text(textwrap.dedent(body))
    return Config.fromfile(str(path))


def test_mmdet_config_builds_ours_unscoped(tmp_path, all_registered):
    cfg = write_config(tmp_path, """
        default_scope = 'mmdet'
        custom_imports = dict(imports=['mmbackbones'], allow_failed_imports=False)
        backbone = dict(type='VoVNet', depth=19, slim=True, out_indices=(2, 3, 4))
    """)
    model = scoped_build('mmdet', cfg.backbone)
    assert type(model) is mmbackbones.VoVNet
    assert [o.shape[1] for o in model(torch.randn(1, 3, 64, 64))] == [256, 384, 512]


def test_mmpretrain_config_builds_a_classifier_with_ours(tmp_path, all_registered):
    cfg = write_config(tmp_path, """
        default_scope = 'mmpretrain'
        custom_imports = dict(imports=['mmbackbones'], allow_failed_imports=False)
        model = dict(
            type='ImageClassifier',
            backbone=dict(type='VoVNet', depth=19, slim=True, out_indices=(4, )),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=10, in_channels=512))
    """)
    model = scoped_build('mmpretrain', cfg.model)
    assert type(model.backbone) is mmbackbones.VoVNet
    assert model(torch.randn(2, 3, 64, 64), mode='tensor').shape == (2, 10)


@pytest.mark.parametrize('scope', ['mmdet', 'mmpretrain'])
@pytest.mark.parametrize('name,kwargs', [
    ('Darknet', dict(depth=19)), ('CSPDarknet', dict(depth=19)), ('VoVNet', dict(depth=19)),
    ('ResNet', dict(depth=18)), ('MobileNetV2', {}), ('MobileNetV3', dict(arch='small')),
    ('EfficientNet', {}), ('ResNeXt', {}), ('WideResNet', {})])
def test_prefixed_name_is_ours_from_any_scope(scope, name, kwargs, all_registered):
    model = scoped_build(scope, dict(type=f'mmbackbones.{name}', **kwargs))
    assert type(model) is getattr(mmbackbones, name)


def test_unreserved_port_resolves_unscoped(all_registered):
    assert type(scoped_build('mmdet', dict(type='WideResNet'))) is mmbackbones.WideResNet


def test_other_packages_keep_their_names(all_registered):
    from mmdet.models.backbones import CSPDarknet as DetCSPDarknet
    from mmdet.models.backbones import Darknet as DetDarknet
    from mmdet.models.backbones import ResNet as DetResNet
    from mmpretrain.models.backbones import MobileNetV2 as ClsMobileNetV2
    assert type(scoped_build('mmdet', dict(type='Darknet'))) is DetDarknet
    assert type(scoped_build('mmdet', dict(type='CSPDarknet'))) is DetCSPDarknet
    assert type(scoped_build('mmdet', dict(type='ResNet', depth=18))) is DetResNet
    assert type(scoped_build('mmpretrain', dict(type='MobileNetV2'))) is ClsMobileNetV2


def test_reserved_names_are_exactly_the_taken_ones(all_registered):
    det, cls = all_registered
    taken = set(det.module_dict) | set(cls.module_dict)
    ours = set(MODELS.module_dict)
    assert ours, 'nothing registered'
    clashes = ours & taken
    assert clashes <= RESERVED_NAMES, f'unreserved clash: {clashes - RESERVED_NAMES}'
    for name in ours:
        in_root = ROOT_MODELS.module_dict.get(name)
        if name in RESERVED_NAMES:
            assert in_root is not MODELS.get(name), f'{name} leaked into the root scope'
        else:
            assert in_root is MODELS.get(name), f'{name} missing from the root scope'
