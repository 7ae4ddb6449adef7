"""mmbackbones.Timm: any timm model under the contract. Features equal timm's own
``features_only`` model, freezing covers exactly what computes the frozen levels,
metadata equals the real outputs, timm's files load strictly, and the model
trains in MMDetection and Detectron2 detectors. timm's models are built with
random weights: nothing is downloaded."""
import os.path as osp
import sys

import pytest
import torch
from torch import nn

timm = pytest.importorskip('timm')

from mmbackbones import (CheckpointError, Timm, build_backbone, deploy,  # noqa: E402
                         list_backbones, load_weights)
from mmbackbones.models import LEVEL_STRIDES  # noqa: E402
from mmbackbones.models.layers import NORM_TYPES, FrozenBatchNormAct2d  # noqa: E402
from detection_utils import build_detector, first_batch, on_demo_data  # noqa: E402
from training_utils import random_bn_statistics  # noqa: E402
from detectron2_utils import d2_cfg, needs_d2, train_a_step  # noqa: E402
from training_utils import (ROOT, assert_checkpointing_keeps_gradients,  # noqa: E402
                            random_bn_statistics)

# ResNet-D, ConvNeXt, RegNetY, EfficientNet, MobileNetV3, and PVTv2 (a hierarchical
# transformer that takes any input size)
FAMILIES = ['resnet18d', 'convnext_atto', 'regnety_002', 'efficientnet_b0',
            'mobilenetv3_small_050', 'pvt_v2_b0']
NO_LEVEL_0 = {'convnext_atto', 'pvt_v2_b0'}  # their first feature has stride 4


def present(name):
    return (1, 2, 3, 4) if name in NO_LEVEL_0 else (0, 1, 2, 3, 4)


def timm_reference(name):
    """timm's own features_only model, random weights and BN statistics."""
    torch.manual_seed(0)
    return random_bn_statistics(timm.create_model(name, features_only=True))


def by_level(features, reference):
    """timm's features keyed by our level (the deepest at each stride)."""
    out = {}
    for feature, stride in zip(features, reference.feature_info.reduction()):
        if stride in LEVEL_STRIDES:
            out[LEVEL_STRIDES.index(stride)] = feature
    return out


@pytest.mark.parametrize('name', FAMILIES)
def test_levels_equal_timm_features_only_and_metadata(name):
    reference = timm_reference(name)
    ours = Timm(name, out_indices=present(name)).eval()
    ours.timm.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        got, expected = ours(x), by_level(reference(x), reference)
    assert ours.out_indices == present(name) == tuple(sorted(expected))
    for level, feature in zip(ours.out_indices, got):
        torch.testing.assert_close(feature, expected[level], rtol=0, atol=1e-6,
                                   msg=f'level {level}')
        # metadata, known without a forward pass, equals the real outputs
        stride = LEVEL_STRIDES[level]
        assert feature.shape == (2, ours.level_channels[level], 96 // stride, 64 // stride)
    assert ours.out_channels == tuple(f.shape[1] for f in got)
    assert ours.out_strides == tuple(96 // f.shape[2] for f in got)
    assert [i['reduction'] for i in ours.feature_info] == list(ours.out_strides)
    if name in NO_LEVEL_0:
        assert ours.level_channels[0] is None and ours.absent_levels == (0, )


def test_any_input_size_for_the_transformer():
    """PVTv2 pads its overlapping patch embeddings: any size works, ceil(size / stride)."""
    ours = Timm('pvt_v2_b0').eval()
    with torch.no_grad():
        outs = ours(torch.randn(1, 3, 61, 45))
    assert [o.shape[-2:] for o in outs] == [(-(-61 // s), -(-45 // s)) for s in ours.out_strides]


def test_metadata_on_the_meta_device_and_absent_levels():
    with torch.device('meta'):
        model = Timm('convnext_atto', frozen_stages=1)
    assert model.level_channels == (None, 40, 80, 160, 320)
    assert model.out_channels == (40, 80, 160, 320) and model.out_strides == (4, 8, 16, 32)
    assert model.level_names[1] == 'stages.0'  # timm's module of that feature
    with pytest.raises(ValueError, match=r"asks for level 0 \(stride 2\), which "
                                         r"Timm\('convnext_atto'\) does not have; its "
                                         r"levels: \[1, 2, 3, 4\]"):
        Timm('convnext_atto', out_indices=(0, 1))
    with pytest.raises(ValueError, match='asks for level 0'):
        model.out_indices = (-5, )  # assigning checks too (the Detectron2 adapter does)
    with pytest.raises(ValueError, match=r'frozen_stages=0 names level 0 \(stride 2\), which '
                                         r"Timm\('convnext_atto'\) does not have"):
        Timm('convnext_atto', frozen_stages=0)


@pytest.mark.parametrize('name,frozen', [('resnet18d', 0), ('convnext_atto', 1),
                                         ('regnety_002', 3),
                                         ('efficientnet_b0', 1), ('mobilenetv3_small_050', 2),
                                         ('pvt_v2_b0', 2)])
def test_frozen_stages_are_exactly_what_computes_those_levels(name, frozen):
    # the truth, from a real backward pass: what level `frozen`'s output depends on
    probe = Timm(name, out_indices=(frozen, ) if frozen else present(name)[:1]).train()
    probe(torch.randn(2, 3, 32, 32))[0].sum().backward()
    needed = {n for n, p in probe.named_parameters() if p.grad is not None}
    assert needed and len(needed) < len(dict(probe.named_parameters()))

    model = Timm(name, frozen_stages=frozen, out_indices=(4, ))
    model.load_state_dict(probe.state_dict())
    model.train()
    frozen_params = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen_params == needed
    frozen_ids = {id(p) for p in model.parameters() if not p.requires_grad}
    for module in model.modules():
        if isinstance(module, NORM_TYPES) and list(module.parameters(recurse=False)):
            all_frozen = all(id(p) in frozen_ids for p in module.parameters())
            assert module.training != all_frozen, module  # frozen norms in eval mode
    # a training step leaves the frozen levels alone
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(2, 3, 32, 32))[0].mean().backward()
    optimizer.step()
    after = model.state_dict()
    for key in before:
        if key in frozen_params or key.rpartition('.')[0] + '.weight' in frozen_params:
            assert torch.equal(before[key], after[key]), key  # weights and BN statistics


def test_norm_eval_and_frozen_bn_keep_timm_numerics():
    """FrozenBN replaces timm's BatchNormAct2d too (keeping its activation, eps and
    values): in eval mode the features stay timm's."""
    reference = timm_reference('tf_efficientnet_lite0')  # timm's TF ports: BN eps 1e-3
    bn = Timm('tf_efficientnet_lite0', out_indices=(0, 1, 2, 3, 4))
    bn.timm.load_state_dict(reference.state_dict())
    frozen = Timm('tf_efficientnet_lite0', out_indices=(0, 1, 2, 3, 4),
                  norm_cfg=dict(type='FrozenBN'))
    frozen.load_state_dict(bn.state_dict())  # BN checkpoints load into FrozenBN
    norms = [m for m in frozen.modules() if isinstance(m, NORM_TYPES)]
    assert norms and not any(isinstance(m, nn.BatchNorm2d) for m in norms)
    assert any(isinstance(m, FrozenBatchNormAct2d) for m in norms)
    assert {m.eps for m in norms} == {1e-3}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(frozen.eval()(x), bn.eval()(x)):  # FrozenBN folds scale and shift
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item())
    model = Timm('tf_efficientnet_lite0', norm_eval=True).train()
    assert all(not m.training for m in model.modules() if isinstance(m, NORM_TYPES))
    for norm_cfg in (dict(type='SyncBN'), dict(type='GN', num_groups=8)):
        model = Timm('tf_efficientnet_lite0', norm_cfg=norm_cfg).eval()
        kinds = {type(m).__mro__[2] for m in model.modules() if hasattr(m, 'act')
                 and isinstance(m, NORM_TYPES)}
        assert kinds == {nn.SyncBatchNorm if norm_cfg['type'] == 'SyncBN' else nn.GroupNorm}
    with pytest.warns(UserWarning, match='has no BatchNorm'):
        Timm('convnext_atto', norm_cfg=dict(type='FrozenBN'))


def test_with_cp_drop_path_and_in_channels():
    torch.manual_seed(0)
    checkpointed = Timm('resnet18d', with_cp=True)
    assert_checkpointing_keeps_gradients(Timm('resnet18d'), checkpointed)
    assert checkpointed.timm.grad_checkpointing
    dropped = Timm('convnext_atto', drop_path_rate=0.1)
    rates = [m.drop_prob for m in dropped.modules() if type(m).__name__ == 'DropPath']
    assert rates and max(rates) == pytest.approx(0.1)
    gray = Timm('regnety_002', in_channels=1).eval()
    assert gray(torch.randn(1, 1, 64, 64))[-1].shape == (1, 368, 2, 2)


def save_timm_weights(name, path):
    """A whole timm classification model (with its head), random weights and BN
    statistics, saved as timm publishes it."""
    torch.manual_seed(1)
    model = random_bn_statistics(timm.create_model(name))
    state = model.state_dict()
    if str(path).endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return model


@pytest.mark.parametrize('name,suffix,norm', [
    ('resnet18d', 'pth', None), ('convnext_atto', 'safetensors', None),
    ('mobilenetv3_small_050', 'pth', 'FrozenBN')])  # timm's BatchNormAct2d -> FrozenBN
def test_pretrained_file_in_timm_layout(name, suffix, norm, tmp_path):
    path = tmp_path / f'{name}.{suffix}'
    source = save_timm_weights(name, path)
    norm_cfg = dict(type=norm) if norm else None
    ours = Timm(name, pretrained_file=str(path), out_indices=(-1, ), norm_cfg=norm_cfg).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # the deepest level is timm's last intermediate
        expected = source.forward_intermediates(x, intermediates_only=True)[-1]
        torch.testing.assert_close(ours(x)[0], expected, rtol=1e-4 if norm else 0,
                                   atol=1e-5 * expected.abs().max().item() if norm else 1e-6)
    # the same file through init_cfg, as for every backbone
    other = Timm(name, norm_cfg=norm_cfg, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    other.init_weights()
    for key, value in ours.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key


def test_timm_files_of_another_model_are_refused(tmp_path):
    from mmbackbones import load_weights
    path = tmp_path / 'resnet18d.pth'
    save_timm_weights('resnet18d', path)
    report = load_weights(Timm('resnet18d'), str(path))
    assert sorted(report.set_aside) == ['fc.bias', 'fc.weight']  # the classifier head
    with pytest.raises(CheckpointError, match='does not fit Timm'):
        Timm('resnet34d', pretrained_file=str(path))
    state = torch.load(path, weights_only=True)
    del state['layer2.0.conv1.weight']
    state['layer9.weight'] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r'(?s)1 tensors of the model are missing.*'
                                              r'timm\.layer2\.0\.conv1\.weight.*layer9\.weight'):
        Timm('resnet18d', pretrained_file=str(path))
    with pytest.raises(FileNotFoundError):
        Timm('resnet18d', pretrained_file=str(tmp_path / 'none.pth'))


def test_our_releases_load_through_init_cfg(tmp_path):
    """A Timm backbone trained here (a classifier's checkpoint, keys under
    ``backbone.``) loads strictly, FrozenBN too; another model is an error."""
    source = Timm('regnety_002')
    for param in source.parameters():
        param.data.normal_()
    path = tmp_path / 'release.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in source.state_dict().items()}},
               path)
    init = dict(type='Pretrained', checkpoint=str(path), prefix='backbone.')
    model = Timm('regnety_002', norm_cfg=dict(type='FrozenBN'), init_cfg=init)
    model.init_weights()
    expected = source.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    with pytest.raises(CheckpointError, match='does not fit Timm'):
        Timm('regnety_004', init_cfg=init).init_weights()


@pytest.mark.parametrize('kwargs,error', [
    (dict(model_name='convnxt_atto'), r"unknown timm model 'convnxt_atto'; close matches: "
                                      r"\[.*'convnext_atto'"),
    (dict(model_name='vit_tiny_patch16_224'), r'not hierarchical: every feature has stride '
                                              r'\[16\]'),
    (dict(model_name='levit_128'), r'features at stride \[64\], beyond the deepest level'),
    (dict(model_name='resnet18d', act_cfg=dict(type='SiLU')), "keeps timm's activations"),
    (dict(model_name='resnet18d', model_kwargs=dict(in_chans=1)), 'use in_channels'),
    (dict(model_name='resnet18d', pretrained=True), 'use weights=True'),
    (dict(model_name='resnet18d', no_such_keyword=1), "does not take these arguments"),
    (dict(model_name='resnet18d', frozen_stages=5), 'frozen_stages=5 is out of range'),
    # both would load the whole backbone, the later one over the other
    (dict(model_name='resnet18d', pretrained_file='a.pth',
          init_cfg=dict(type='Pretrained', checkpoint='b.pth')),
     r"give pretrained_file= or init_cfg=dict\(type='Pretrained', checkpoint='b.pth'\), "
     r'not both'),
    (dict(model_name='resnet18d', weights=True, init_cfg=[
        dict(type='Kaiming', layer='Conv2d'), dict(type='Pretrained', checkpoint='b.pth')]),
     r"give weights= or init_cfg=dict\(type='Pretrained', checkpoint='b.pth'\)"),
])
def test_clear_errors(kwargs, error):
    with pytest.raises(ValueError, match=error):
        Timm(**kwargs)


def test_other_timm_keywords_pass_through():
    model = Timm('convnext_atto', ls_init_value=0.5, model_kwargs=dict(conv_mlp=True))
    assert model.model_kwargs == dict(ls_init_value=0.5, conv_mlp=True)
    gammas = [m.gamma for m in model.modules() if hasattr(m, 'gamma')
              and isinstance(m.gamma, torch.Tensor)]
    assert gammas and all(torch.all(g == 0.5) for g in gammas)


def test_deploy_folds_norm_activation_layers():
    model = random_bn_statistics(Timm('efficientnet_b0', out_indices=(0, 1, 2, 3, 4)))
    deployed = deploy(model, channels_last=False)
    folded = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) - \
        sum(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    assert folded >= 20
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(deployed(x), model(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


def test_registered_for_mmdetection_and_mmpretrain():
    from mmengine.registry import DefaultScope
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as CLS
    assert 'Timm' in list_backbones()
    assert isinstance(build_backbone('Timm', model_name='resnet18d'), Timm)
    with DefaultScope.overwrite_default_scope('mmdet'):
        for type_ in ('Timm', 'mmbackbones.Timm'):
            assert isinstance(DET.build(dict(type=type_, model_name='resnet18d')), Timm)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = CLS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='mmbackbones.Timm', model_name='convnext_atto', out_indices=-1),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=10, in_channels=320)))
    assert classifier(torch.randn(2, 3, 64, 64), mode='tensor').shape == (2, 10)


def test_mmdetection_retinanet_trains_a_step(det_root):
    """The shipped ConvNeXt-T config, on the demo set with the smallest ConvNeXt."""
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'detection',
                                   'retinanet_convnext-tiny_fpn_1x_coco.py'))
    cfg = on_demo_data(cfg, det_root)
    cfg.model.backbone.model_name = 'convnext_atto'
    cfg.model.backbone.weights = None  # nothing is downloaded in tests
    cfg.model.neck.in_channels = [40, 80, 160, 320]
    model = build_detector(cfg)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    model.train()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    log_vars = model.train_step(first_batch(cfg.train_dataloader), optim)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in log_vars.values()), log_vars
    after = model.backbone.state_dict()
    # frozen_stages=1: the stem and the first stage (stride 4) keep their weights
    assert all(torch.equal(after[k], before[k]) for k in after
               if k.startswith(('timm.stem', 'timm.stages_0.')))
    assert any(not torch.equal(after[k], before[k]) for k in after
               if k.startswith('timm.stages_3.'))


@needs_d2
@pytest.mark.parametrize('meta,name', [('retinanet', 'convnext_atto'), ('rcnn', 'resnet18d')])
def test_detectron2_model_trains_a_step(meta, name):
    import mmbackbones.adapters.detectron2 as d2
    from detectron2.modeling import build_model
    norm = 'BN' if name == 'convnext_atto' else 'FrozenBN'  # ConvNeXt has no BatchNorm
    cfg = d2_cfg(d2, meta, 'Timm', dict(model_name=name), norm=norm)
    model = build_model(cfg)
    bottom_up = model.backbone.bottom_up
    body = bottom_up.body
    assert {k: (v.channels, v.stride) for k, v in bottom_up.output_shape().items()} == {
        f'res{level + 1}': (body.level_channels[level], LEVEL_STRIDES[level])
        for level in body.out_indices}
    assert body.frozen_stages == 1
    train_a_step(model)
    # FREEZE_AT=1 would freeze level 0 (stride 2), which ConvNeXt does not have
    if name == 'convnext_atto':
        cfg.MODEL.BACKBONE.FREEZE_AT = 1
        with pytest.raises(ValueError, match='does not have'):
            build_model(cfg)


def test_get_flops_and_benchmark_take_any_timm_model(capsys):
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import benchmark as benchmark_tool
    import get_flops
    get_flops.main(['Timm', '--args', 'model_name=convnext_atto', '--shape', '64'])
    row = [line for line in capsys.readouterr().out.splitlines()
           if line.startswith('| Timm (model_name=convnext_atto) |')]
    params, gmacs, gflops = (float(x) for x in row[0].strip('| ').split(' | ')[1:])
    assert params == pytest.approx(3.37, abs=0.01)  # timm's convnext_atto without its head
    assert gflops == pytest.approx(2 * gmacs, rel=1e-2) and gmacs > 0
    rows = benchmark_tool.main(['Timm', '--args', 'model_name=resnet18d', '--batch', '2',
                                '--shape', '64', '--repeats', '1', '--iters', '1',
                                '--warmup', '1', '--mode', 'infer'])
    assert [model for _, model, *_ in rows] == ['ours (eager)', 'reference (eager)']
    assert float(rows[0][-1]) > 0


def test_pretrained_file_is_applied_after_every_other_initialiser(tmp_path):
    """The ImageNet recipe's Kaiming/Constant init_cfg ran on top of a
    pretrained_file loaded in __init__; now the file is loaded last."""
    import timm
    source = random_bn_statistics(timm.create_model('regnety_002', pretrained=False))
    path = tmp_path / 'regnety.pth'
    torch.save(source.state_dict(), path)
    reference = Timm('regnety_002', pretrained_file=str(path)).eval()
    model = Timm('regnety_002', pretrained_file=str(path), init_cfg=[
        dict(type='Kaiming', layer='Conv2d'), dict(type='Constant', val=1, layer='BatchNorm2d')])
    model.init_weights()
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_a_checkpoint_with_a_tuple_keyword_loads_into_its_own_network(tmp_path):
    """A record is written as lists (``depths=[1, 1, 2, 1]``) and the model has
    tuples: the same network, which tools/test.py, --resume and --load-from
    refused."""
    from mmbackbones.loader import network_record, recorded_kwargs
    from mmbackbones.publish import write_release
    config = dict(type='mmbackbones.Timm', model_name='convnext_atto', depths=(1, 1, 2, 1))
    source = Timm(**{k: v for k, v in config.items() if k != 'type'})
    record = network_record(source, config)
    assert record['depths'] == [1, 1, 2, 1]
    release = write_release({f'backbone.{k}': v for k, v in source.state_dict().items()},
                            dict(backbone=record), str(tmp_path / 'release.pth'))
    model = Timm('convnext_atto', depths=(1, 1, 2, 1))
    load_weights(model, release, prefix='backbone.')
    assert torch.equal(model.state_dict()['timm.stem_0.weight'],
                       source.state_dict()['timm.stem_0.weight'])
    type_, kwargs = recorded_kwargs(record)
    load_weights(build_backbone(type_, **kwargs), release, prefix='backbone.')
    with pytest.raises(CheckpointError, match=r"holds a Timm with model_kwargs=\{'depths': "
                                              r"\[1, 1, 2, 1\]\}; this model has "
                                              r"model_kwargs=\{'depths': \[1, 1, 1, 1\]\}"):
        load_weights(Timm('convnext_atto', depths=(1, 1, 1, 1)), release, prefix='backbone.')
