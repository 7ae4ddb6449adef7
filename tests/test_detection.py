"""MMDetection configs that consume the backbones: build, train a step, infer, load
pretrained weights strictly, keep frozen stages frozen."""
import copy
import glob
import sys
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmbackbones
from mmbackbones.loader import check_network, network
from mmbackbones.weights.catalog import lookup
from mmbackbones.weights.detectors import DETECTORS
from mmbackbones import CheckpointError
from mmbackbones.publish import publish_checkpoint
from detection_utils import build_detector, first_batch, on_demo_data
from training_utils import ROOT, run_tool

#: configs of public COCO detectors (MMDetection's model zoo): built, checked and
#: compared with MMDetection's own detectors in test_detector_weights.py; and those
#: that fine-tune one (load_from a named detector), trained by the docs test
ZOO_CONFIGS = {osp.join(ROOT, config) for entry in DETECTORS for config in entry.configs}
DET_CONFIGS = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', 'detection', '*.py'))
                     if p not in ZOO_CONFIGS
                     and "load_from = 'mmbackbones://" not in open(p).read())


def test_all_detector_configs_are_here():
    names = {osp.basename(p) for p in DET_CONFIGS}
    for det in ('retinanet', 'faster-rcnn', 'fcos'):
        for backbone in ('vovnet39', 'vovnet57', 'vovnet99', 'cspdarknet53'):
            assert any(n.startswith(f'{det}_{backbone}_fpn') for n in names), (det, backbone)
    assert 'yolov3_darknet53_ms-608-273e_coco.py' in names


@pytest.mark.slow  # 19 detectors built and trained a step: about a CPU-minute
@pytest.mark.parametrize('path', DET_CONFIGS, ids=osp.basename)
def test_config_builds_trains_a_step_and_infers(path, det_root):
    raw = Config.fromfile(path)
    backbone_cfg = raw.model.backbone
    assert (backbone_cfg.frozen_stages, backbone_cfg.norm_eval) == (1, True)
    checkpoint = backbone_cfg.init_cfg.checkpoint if backbone_cfg.get('init_cfg') else None
    if backbone_cfg.type == 'mmbackbones.Timm':  # timm's published file for the tag
        assert backbone_cfg.weights is True and '.' in backbone_cfg.model_name
        assert checkpoint is None
    elif checkpoint.startswith('mmbackbones://'):  # a public file by name
        assert 'public' in osp.basename(path)
    else:  # our own release of the ImageNet recipe
        assert checkpoint.startswith('checkpoints/') and backbone_cfg.init_cfg.prefix == 'backbone.'
    assert 'mmbackbones' in raw.custom_imports.imports
    cfg = on_demo_data(raw, det_root)
    cfg.model.backbone.pop('weights', None)  # nothing is downloaded here (test_weights_by_name)
    if 'roi_head' in cfg.model:  # 100 RoIs, not 1000, through the 1024-wide box head
        cfg.model.train_cfg.rcnn.sampler.num = 64
        cfg.model.test_cfg.rpn.max_per_img = 100
    model = build_detector(cfg)
    backbone = model.backbone
    assert isinstance(backbone, mmbackbones.BaseBackbone)
    if checkpoint and checkpoint.startswith('mmbackbones://'):
        entry = lookup(checkpoint)  # the config's network is the one the file holds
        check_network(backbone, entry.type, network(entry.type, entry.kwargs).arch_args(),
                      what=checkpoint)
    expected = list(backbone.out_channels)
    if raw.model.neck.type == 'YOLOV3Neck':
        expected = expected[::-1]  # YOLOV3Neck lists channels deepest first
    assert list(raw.model.neck.in_channels) == expected

    from mmengine.optim import build_optim_wrapper
    optim = build_optim_wrapper(model, dict(type='OptimWrapper', optimizer=dict(
        type='SGD', lr=0.001, momentum=0.9)))
    model.train()
    log_vars = model.train_step(first_batch(cfg.train_dataloader), optim)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in log_vars.values()), log_vars
    model.eval()
    with torch.no_grad():
        predictions = model.val_step(first_batch(cfg.val_dataloader))
    assert len(predictions) == 2
    assert predictions[0].pred_instances.bboxes.shape[-1] == 4


@pytest.fixture(scope='module')
def published_vovnet39(tmp_path_factory):
    """A classification checkpoint of VoVNet-39 (random weights) as tools publish it."""
    from mmpretrain.registry import MODELS
    folder = tmp_path_factory.mktemp('ckpt')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = MODELS.build(dict(
            type='ImageClassifier', backbone=dict(type='VoVNet', depth=39, out_indices=(4, )),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=10, in_channels=1024)))
    torch.manual_seed(1)
    for p in classifier.parameters():
        p.data.normal_()
    raw = folder / 'epoch_1.pth'
    torch.save({'state_dict': classifier.state_dict(), 'meta': {'epoch': 1}}, raw)
    return publish_checkpoint(str(raw), str(folder / 'vovnet39_imagenet.pth'))


def retinanet_vovnet39(det_root, **init_cfg):
    cfg = on_demo_data(Config.fromfile(osp.join(ROOT, 'configs', 'detection',
                                                'retinanet_vovnet39_fpn_1x_coco.py')), det_root)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', prefix='backbone.', **init_cfg)
    return build_detector(cfg), cfg


def test_init_weights_loads_every_backbone_tensor(published_vovnet39, det_root):
    model, _ = retinanet_vovnet39(det_root, checkpoint=published_vovnet39)
    model.init_weights()
    release = torch.load(published_vovnet39, weights_only=True)['state_dict']
    own = model.backbone.state_dict()
    assert len(own) > 100
    for key, value in own.items():
        assert torch.equal(value, release['backbone.' + key]), key


def test_wrong_checkpoint_or_prefix_is_an_error(published_vovnet39, det_root, tmp_path):
    model, _ = retinanet_vovnet39(det_root, checkpoint=published_vovnet39)
    model.backbone.init_cfg['prefix'] = 'model.'
    with pytest.raises(CheckpointError, match=r"prefix 'model\.' matches none"):
        model.init_weights()
    other = tmp_path / 'darknet.pth'
    darknet = mmbackbones.build_backbone('Darknet-19')
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in darknet.state_dict().items()}},
               other)
    model, _ = retinanet_vovnet39(det_root, checkpoint=str(other))
    with pytest.raises(CheckpointError, match='does not fit VoVNet'):
        model.init_weights()


def test_frozen_stages_and_norm_eval_hold_through_a_training_step(det_root):
    model, cfg = retinanet_vovnet39(det_root, checkpoint='unused')
    model.backbone.init_cfg = None
    from mmengine.optim import build_optim_wrapper
    optim = build_optim_wrapper(model, dict(type='OptimWrapper', optimizer=dict(
        type='SGD', lr=0.1, momentum=0.9)))
    model.train()
    before = copy.deepcopy(model.backbone.state_dict())
    model.train_step(first_batch(cfg.train_dataloader), optim)
    after = model.backbone.state_dict()
    for key, value in after.items():
        level = key.split('.')[0]
        if level in ('stem', 'stage2') or 'running_' in key or 'num_batches' in key:
            assert torch.equal(value, before[key]), f'{key} changed'
    changed = [k for k in after if k.startswith('stage5') and k.endswith('conv.weight')
               and not torch.equal(after[k], before[k])]
    assert changed, 'unfrozen weights did not train'


def test_get_flops_on_a_detector_config_without_data(tmp_path):
    result = run_tool(['tools/get_flops.py',
                       osp.join(ROOT, 'configs', 'detection', 'faster-rcnn_vovnet39_fpn_1x_coco.py'),
                       '--shape', '256', '320'])
    assert 'input 1x3x256x320' in result.stdout
    assert '| whole model (backbone + neck + head) |' in result.stdout
    assert 'pkg_resources' not in result.stderr  # the stack's noise is silenced
    row = [line for line in result.stdout.splitlines() if 'faster-rcnn' in line][0]
    params, gmacs, gflops = (float(x) for x in row.strip('| ').split(' | ')[1:])
    assert 40 < params < 50 and gflops == pytest.approx(2 * gmacs, rel=1e-2)


def test_deploy_folds_a_whole_yolov3(det_root):
    """deploy() on a detector: backbone and neck (mmcv ConvModules with BN) fold,
    and the head's raw outputs stay equal."""
    from mmbackbones import deploy
    from mmbackbones.deploy import foldable
    cfg = on_demo_data(Config.fromfile(osp.join(
        ROOT, 'configs', 'detection', 'yolov3_darknet53_ms-608-273e_coco.py')), det_root)
    model = build_detector(cfg).eval()
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # statistics that make folding matter
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    inputs = model.data_preprocessor(first_batch(cfg.val_dataloader), False)['inputs']
    deployed = deploy(model)
    assert any(foldable(m) for m in model.neck.modules())
    assert not any(foldable(m) for m in deployed.modules())
    with torch.no_grad():
        expected = torch.cat([t.flatten() for t in model._forward(inputs)[0]])
        got = torch.cat([t.flatten() for t in deployed._forward(inputs)[0]])
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


def test_sizing_and_timing_never_need_weights(monkeypatch):
    """The timm detection configs name timm's published weights (weights=True):
    get_flops and benchmark build them without reading or downloading anything."""
    import argparse
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import benchmark as benchmark_tool
    import get_flops as get_flops_tool
    monkeypatch.setenv('MMBACKBONES_OFFLINE', '1')  # any download attempt is an error
    path = osp.join(ROOT, 'configs', 'detection', 'retinanet_convnext-tiny_fpn_1x_coco.py')
    assert Config.fromfile(path).model.backbone.weights is True
    sizes = get_flops_tool.measure_config(path, (64, 64), {})
    assert 35e6 < sizes.params < 45e6
    backbone = benchmark_tool.build_ours(argparse.Namespace(target=path, args=[]))[0]
    assert type(backbone).__name__ == 'Timm' and backbone.weights is None
