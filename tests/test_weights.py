"""Public ImageNet checkpoints in their own layouts (timm, MMDetection, MMPretrain,
vovnet-detectron2/DD3D) convert to networks that compute exactly what the
source's did: random weights and random BN statistics, features compared at
every stride."""
import dataclasses
import hashlib
import os

import pytest
import torch

from mmbackbones import CheckpointError, build_backbone, list_variants, load_weights
from mmbackbones import convert_weights
from mmbackbones.weights import LAYOUTS
from public_layouts import D2_SPECS, vovnet_detectron2_state
from training_utils import random_bn_statistics, run_tool


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    return random_bn_statistics(model, mean=0.5)


def assert_same_features(ours, theirs):
    for level, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, (level, a.shape, b.shape)
        err = (a - b).abs().max().item() / b.abs().max().item()
        assert err <= 1e-5, f'level {level}: relative error {err:.2e}'


TIMM = {'darknet53': 'Darknet-53-LeakyReLU-0.01', 'vovnet39a': 'VoVNet-39-S4-V1',
        'vovnet57a': 'VoVNet-57-S4-V1', 'ese_vovnet39b': 'VoVNet-39-S4-lastESE',
        'ese_vovnet57b': 'VoVNet-57-S4-lastESE'}


@pytest.mark.parametrize('name', sorted(TIMM))
def test_timm_features_equal_at_every_stride(name):
    import timm
    source = randomize(timm.create_model(name, pretrained=False))
    converted = convert_weights(source.state_dict())
    assert converted.source == f'timm:{name}'
    assert converted.set_aside == ['head.fc.weight', 'head.fc.bias']
    variant_type, variant_kwargs = list_variants()[TIMM[name]]
    assert (converted.type, converted.kwargs) == (variant_type, variant_kwargs)
    ours = converted.build(out_indices=(0, 1, 2, 3, 4)).eval()
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        theirs = dict(zip([f['reduction'] for f in source.feature_info],
                          source.forward_intermediates(x, intermediates_only=True)))
        assert_same_features(ours(x), [theirs[s] for s in ours.out_strides])


def test_mmdetection_darknet53_features_equal():
    from mmdet.models.backbones import Darknet as MMDetDarknet
    source = randomize(MMDetDarknet(depth=53, out_indices=(1, 2, 3, 4, 5)))
    converted = convert_weights({'state_dict': {f'backbone.{k}': v for k, v in
                                                source.state_dict().items()}})
    assert converted.source == 'mmdet:darknet53'
    ours = converted.build(out_indices=(0, 1, 2, 3, 4)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_same_features(ours(x), source(x))


def test_mmpretrain_resnet50_features_equal():
    from mmpretrain.models import ResNet as MMPretrainResNet
    source = randomize(MMPretrainResNet(depth=50, out_indices=(0, 1, 2, 3)))
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(1000, 2048)
    converted = convert_weights({'state_dict': state, 'meta': {}})
    assert converted.source == 'torchvision:resnet50'  # MMPretrain's shares the keys
    assert converted.set_aside == ['head.fc.weight']
    ours = converted.build().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_same_features(ours(x), source(x))


@pytest.mark.parametrize('depth', [19, 39, 57, 99])
@pytest.mark.parametrize('prefix', ['', 'backbone.bottom_up.', 'img_backbone.',
                                    'module.backbone.bottom_up.'])
def test_vovnet_detectron2_and_dd3d_layouts(depth, prefix):
    state = vovnet_detectron2_state(depth)
    wrapped = {prefix + k: v for k, v in state.items()}
    if prefix:  # a detector checkpoint: FPN and heads are set aside
        wrapped[prefix.replace('bottom_up.', '').replace('img_backbone.', 'img_neck.')
                + 'fpn_lateral2.weight'] = torch.zeros(1)
    converted = convert_weights({'model': wrapped})
    assert converted.source == f'vovnet-detectron2:V-{depth}-eSE'
    assert (converted.type, converted.kwargs) == ('VoVNet', dict(depth=depth, stem_stride=4))
    assert len(converted.filled) == sum(k.endswith('/norm.running_mean') for k in state)
    ours = converted.state_dict
    assert torch.equal(ours['stem.1.norm.running_var'], state['stem.stem_2/norm.running_var'])
    assert torch.equal(ours['stage2.0.conv.weight'], state['stem.stem_3/conv.weight'])
    last = D2_SPECS[depth][3][2]
    assert torch.equal(ours[f'stage4.{last}.layers.2.norm.bias'],
                       state[f'stage4.OSA4_{last}.layers.2.OSA4_{last}_2/norm.bias'])
    assert torch.equal(ours['stage5.1.concat_conv.conv.weight'],
                       state['stage5.OSA5_1.concat.OSA5_1_concat/conv.weight'])
    assert torch.equal(ours['stage3.1.ese.fc.bias'], state['stage3.OSA3_1.ese.fc.bias'])
    converted.build()  # every tensor of the network, exactly


@pytest.fixture
def timm_darknet_file(tmp_path):
    import timm
    source = randomize(timm.create_model('darknet53', pretrained=False))
    path = tmp_path / 'darknet53.pth'
    torch.save(source.state_dict(), path)
    return str(path), source


def test_init_cfg_and_load_weights_take_public_files(timm_darknet_file):
    path, source = timm_darknet_file
    name, kwargs = list_variants()['Darknet-53-LeakyReLU-0.01']
    model = build_backbone(name, **kwargs, init_cfg=dict(type='Pretrained', checkpoint=path,
                                                         prefix='backbone.'))
    model.init_weights()
    assert torch.equal(model.stage5[-1].conv2.norm.running_mean,
                       source.stages[4].blocks[-1].conv2.bn.running_mean)
    report = load_weights(build_backbone(name, **kwargs), path)
    assert report.set_aside == ['head.fc.weight', 'head.fc.bias']
    with pytest.raises(CheckpointError, match=r"timm:darknet53 layout\) holds a Darknet with "
                                              r"act_cfg=.*LeakyReLU.*this model has act_cfg="):
        load_weights(build_backbone('Darknet-53'), path)  # ReLU: another network


def test_convert_weights_tool_writes_a_release_and_prints_the_config(timm_darknet_file,
                                                                     tmp_path):
    path, source = timm_darknet_file
    out = tmp_path / 'checkpoints' / 'darknet53_timm.pth'
    result = run_tool(['tools/convert_weights.py', path, str(out)])
    assert 'timm:darknet53 layout' in result.stdout
    assert "type='mmbackbones.Darknet', depth=53, act_cfg={'type': 'LeakyReLU', " \
           "'negative_slope': 0.01}" in result.stdout
    release = torch.load(out, weights_only=True)  # plain torch: a release
    assert release['meta']['layout'] == 'timm:darknet53'
    name, kwargs = list_variants()['Darknet-53-LeakyReLU-0.01']
    model = build_backbone(name, **kwargs, init_cfg=dict(
        type='Pretrained', checkpoint=str(out), prefix='backbone.'))
    model.init_weights()
    assert torch.equal(model.stem[0].conv.weight, source.stem.conv1.conv.weight)
    # the release names its network: the detection configs' Darknet-53 (ReLU) refuses it
    with pytest.raises(CheckpointError, match=r"holds a Darknet with act_cfg=.*'negative_slope': "
                                              r"0.01.*this model has act_cfg=\{'type': 'ReLU'\}"):
        load_weights(build_backbone('Darknet-53'), str(out), prefix='backbone.')


def test_unknown_truncated_and_unsafe_files_are_clear_errors(tmp_path):
    import timm
    other = tmp_path / 'resnet26.pth'
    torch.save(timm.create_model('resnet26', pretrained=False).state_dict(), other)
    with pytest.raises(CheckpointError, match=r"matches no known layout exactly \(known: "
                                              r"\[.*'mmdet:darknet53'"):
        convert_weights(str(other))
    with pytest.raises(CheckpointError, match="unknown layout 'timm:nope'"):
        convert_weights(str(other), layout='timm:nope')
    good = tmp_path / 'vov.pth'
    torch.save(vovnet_detectron2_state(19), good)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:4096])
    with pytest.raises(CheckpointError, match='cannot read checkpoint'):
        convert_weights(str(truncated))
    evil = tmp_path / 'evil.pth'
    torch.save({'model': vovnet_detectron2_state(19), 'x': os.system}, evil)
    with pytest.raises(CheckpointError, match='refusing to load'):
        convert_weights(str(evil))
    state = vovnet_detectron2_state(39)
    del state['stage4.OSA4_2.ese.fc.bias']
    with pytest.raises(CheckpointError, match=r'V-39-eSE: 1 tensors missing '
                                              r'\[stage4\.2\.ese\.fc\.bias\]'):
        convert_weights(state)


def test_every_layout_network_is_a_listed_variant():
    """(A caffe-style ResNet is its variant with style='caffe'.)"""
    variants = list(list_variants().values())
    for layout in LAYOUTS.values():
        kwargs = {k: v for k, v in layout.kwargs.items() if (k, v) != ('style', 'caffe')}
        assert (layout.type, kwargs) in variants, layout.name


def test_public_detection_configs_load_the_original_files(tmp_path, monkeypatch):
    """The -public detection configs name the original files; they load as they are."""
    from mmengine.config import Config
    from mmengine.registry import MODELS
    from mmengine.runner.checkpoint import get_external_models
    from mmdet.models.backbones import Darknet as MMDetDarknet
    from training_utils import ROOT
    det = os.path.join(ROOT, 'configs', 'detection')
    vov = tmp_path / 'V-39-eSE.pth'
    state = vovnet_detectron2_state(39)
    torch.save(state, vov)
    cfg = Config.fromfile(os.path.join(det, 'retinanet_vovnet39-public_fpn_1x_coco.py'))
    assert cfg.model.data_preprocessor.std == [1.0, 1.0, 1.0]  # Detectron2's input
    cfg.model.backbone.init_cfg.checkpoint = str(vov)
    backbone = MODELS.build(cfg.model.backbone)
    backbone.init_weights()
    assert torch.equal(backbone.stage5[1].ese.fc.weight, state['stage5.OSA5_1.ese.fc.weight'])
    # mmdet/darknet53 (open-mmlab://darknet53) from the weights cache, in MMDetection's layout
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    cache = tmp_path / 'torch_home' / 'hub' / 'checkpoints'
    cache.mkdir(parents=True)
    source = randomize(MMDetDarknet(depth=53))
    standin = cache / get_external_models()['darknet53'].rsplit('/', 1)[-1]
    torch.save({'state_dict': source.state_dict()}, standin)
    # a stand-in for the published file: the entry pinned to its hash, which is checked
    from mmbackbones.weights.catalog import catalog
    monkeypatch.setitem(catalog(), 'mmdet/darknet53', dataclasses.replace(
        catalog()['mmdet/darknet53'], sha256=hashlib.sha256(standin.read_bytes()).hexdigest()))
    cfg = Config.fromfile(os.path.join(det, 'yolov3_darknet53-public_ms-608-273e_coco.py'))
    assert cfg.model.backbone.init_cfg.checkpoint == 'mmbackbones://mmdet/darknet53'
    backbone = MODELS.build(cfg.model.backbone)
    backbone.init_weights()
    assert torch.equal(backbone.stage5[0].conv.weight, source.conv_res_block5.conv.conv.weight)


def test_same_keys_but_another_computation_is_refused(timm_darknet_file, tmp_path):
    import timm
    path = tmp_path / 'ese39b.pth'
    torch.save(timm.create_model('ese_vovnet39b', pretrained=False).state_dict(), path)
    same_keys = dict(depth=39, stem_stride=4, ese='last')
    load_weights(build_backbone('VoVNet', **same_keys), str(path))
    for other in (dict(residual=False), dict(act_cfg=dict(type='SiLU')),
                  dict(norm_cfg=dict(type='BN', eps=1e-3))):
        with pytest.raises(CheckpointError, match='would compute something else'):
            load_weights(build_backbone('VoVNet', **same_keys, **other), str(path))
    load_weights(build_backbone('VoVNet', **same_keys, norm_cfg=dict(type='FrozenBN'),
                                frozen_stages=1, out_indices=(2, 3)), str(path))


def test_detectron2_converter_takes_public_files_and_refuses_broken_ones(tmp_path):
    """tools/convert_to_detectron2.py (plain Python, no Detectron2 needed)."""
    import sys
    from training_utils import ROOT
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    from convert_to_detectron2 import convert
    state = {f'backbone.bottom_up.{k}': v for k, v in vovnet_detectron2_state(19).items()}
    good, broken = tmp_path / 'dd3d.pth', tmp_path / 'broken.pth'
    torch.save(state, good)
    count = convert(str(good), str(tmp_path / 'd2.pth'))
    written = torch.load(tmp_path / 'd2.pth', weights_only=True)['model']
    assert count == len(written) == len(build_backbone('VoVNet', depth=19).state_dict())
    assert all(k.startswith('backbone.bottom_up.body.stem.') or
               k.startswith('backbone.bottom_up.body.stage') for k in written)
    del state['backbone.bottom_up.stage3.OSA3_1.ese.fc.bias']
    torch.save(state, broken)
    with pytest.raises(CheckpointError, match='neither an mmbackbones checkpoint.*1 tensors '
                                              'missing'):
        convert(str(broken), str(tmp_path / 'd2b.pth'))


OTHER_DEPTH = {'ResNet': {18: 34, 34: 18, 50: 101, 101: 50, 152: 50}, 'Darknet': {53: 19},
               'VoVNet': {19: 39, 39: 57, 57: 39, 99: 57}}


def _another_value(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return {2: 4, 4: 2}.get(value, value + 1)
    if isinstance(value, dict):  # an activation: same keys, another computation
        return dict(type='ReLU') if value.get('type') != 'ReLU' else dict(type='SiLU')
    if value in ('caffe', 'pytorch'):  # a ResNet's style
        return 'pytorch' if value == 'caffe' else 'caffe'
    return False if value == 'last' else 'last'


@pytest.mark.parametrize('layout', sorted(LAYOUTS), ids=str)
def test_every_layouts_distinguishing_arguments_are_checked(layout, tmp_path):
    """A release records its network (meta.backbone); changing any argument the
    layout fixes (depth, stem_stride, ese, residual, activation and slope) makes
    the load an error that names that argument, before any key is compared."""
    from mmbackbones.loader import network_record
    from mmbackbones.publish import write_release
    spec = LAYOUTS[layout]
    with torch.device('meta'):
        source = build_backbone(spec.type, **spec.kwargs)
    state = {f'backbone.{k}': torch.zeros(v.shape, dtype=v.dtype)
             for k, v in source.state_dict().items()}
    release = write_release(state, dict(backbone=network_record(source, spec.kwargs)),
                            str(tmp_path / 'release.pth'))
    for name, value in spec.kwargs.items():
        other = dict(spec.kwargs, **{name: OTHER_DEPTH[spec.type][value] if name == 'depth'
                                     else _another_value(value)})
        with torch.device('meta'):
            model = build_backbone(spec.type, **other)
        with pytest.raises(CheckpointError, match=rf'holds a {spec.type} with {name}=.*this '
                                                  rf'model has {name}='):
            load_weights(model, release, prefix='backbone.')
