"""The Detectron2 adapter. Naming, shapes, strides and the freeze mapping are
plain Python and always tested; the rest runs where Detectron2 is importable
(it is not on PyPI: build it from source) and shows as skipped otherwise."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from detectron2_utils import HAS_D2, d2_cfg, demo_inputs, needs_d2, train_a_step
from mmbackbones import build_backbone
from mmbackbones.weights.detectors import DETECTORS
from mmbackbones.adapters.naming import (deepest_feature, feature_levels,
                                         freeze_at_to_frozen_stages,
                                         norm_cfg_from_detectron2, output_shapes,
                                         size_divisibility)
from training_utils import ROOT


def test_feature_names_and_shapes_from_metadata():
    vovnet = build_backbone('VoVNet-39')
    names = ['res2', 'res3', 'res4', 'res5']
    assert feature_levels(names) == (1, 2, 3, 4)
    assert feature_levels(['c1', 'c3']) == (0, 2)
    assert output_shapes(vovnet.level_channels, names) == {
        'res2': (256, 4), 'res3': (512, 8), 'res4': (768, 16), 'res5': (1024, 32)}
    resnet = build_backbone('ResNet-50')
    assert output_shapes(resnet.level_channels, ['res1', 'res5']) == {
        'res1': (64, 2), 'res5': (2048, 32)}
    assert size_divisibility(['res2', 'res3', 'res4']) == 16
    assert size_divisibility(names) == 32


@pytest.mark.parametrize('names,pattern', [
    (['res6'], r"unknown feature 'res6'; valid: \['res1'"),
    (['p2'], 'unknown feature'),
    (['res3', 'res2'], 'shallowest first'),
    (['res2', 'c2'], 'distinct levels'),
    ([], 'distinct levels'),
])
def test_bad_feature_names(names, pattern):
    with pytest.raises(ValueError, match=pattern):
        feature_levels(names)


def test_freeze_at_mapping_matches_detectron2_meaning():
    assert [freeze_at_to_frozen_stages(f) for f in range(6)] == [-1, 0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match='FREEZE_AT=6 is out of range'):
        freeze_at_to_frozen_stages(6)
    # FREEZE_AT=2 = stem + res2 = our levels 0 and 1 = MMDetection's frozen_stages=1
    model = build_backbone('ResNet-50', frozen_stages=freeze_at_to_frozen_stages(2))
    frozen = {n.split('.')[0] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {'stem', 'stage2'}
    assert norm_cfg_from_detectron2('FrozenBN') == dict(type='FrozenBN')
    with pytest.raises(ValueError, match=r"unknown NORM 'LN'"):
        norm_cfg_from_detectron2('LN')


def test_p6_p7_source_is_the_deepest_feature_in_either_naming():
    assert deepest_feature(['res3', 'res4', 'res5']) == 'res5'
    assert deepest_feature(['c3', 'c4', 'c5']) == 'c5'
    assert deepest_feature(['c2', 'c4']) == 'c4'


def test_importing_mmbackbones_never_imports_detectron2():
    code = ('import sys, mmbackbones, mmbackbones.adapters; '
            'assert "detectron2" not in sys.modules, "imported"')
    subprocess.run([sys.executable, '-c', code], check=True)


@pytest.mark.skipif(HAS_D2, reason='Detectron2 is installed')
def test_adapter_says_what_to_install():
    with pytest.raises(ImportError, match='needs Detectron2, which is not on PyPI'):
        import mmbackbones.adapters.detectron2  # noqa: F401


# ----------------------------------------------------------- with real Detectron2
@pytest.fixture
def d2():
    import mmbackbones.adapters.detectron2 as adapter
    return adapter


def random_release(tmp_path, variant='VoVNet-19-slim'):
    """A backbone with random weights and its classifier-style checkpoint file."""
    source = build_backbone(variant)
    for p in source.parameters():
        p.data.normal_()
    path = tmp_path / 'release.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in source.state_dict().items()}},
               path)
    return source, path


@needs_d2
@pytest.mark.parametrize('meta', ['retinanet', 'rcnn'])
@pytest.mark.parametrize('backbone,args', [
    ('VoVNet', dict(depth=39)), ('Darknet', dict(depth=53)), ('ResNet', dict(depth=18))])
def test_detectron2_models_train_a_step_and_infer(d2, meta, backbone, args):
    from detectron2.modeling import build_model
    cfg = d2_cfg(d2, meta, backbone, args)
    model = build_model(cfg)
    bottom_up = model.backbone.bottom_up
    assert isinstance(bottom_up, d2.MMBackbone)
    assert bottom_up._out_features == list(cfg.MODEL.FPN.IN_FEATURES)
    assert {k: (v.channels, v.stride) for k, v in bottom_up.output_shape().items()} == \
        output_shapes(bottom_up.body.level_channels, cfg.MODEL.FPN.IN_FEATURES)
    train_a_step(model)
    model.eval()
    with torch.no_grad():
        outputs = model([{k: v for k, v in x.items() if k != 'instances'}
                         for x in demo_inputs()])
    assert len(outputs) == 2 and outputs[0]['instances'].pred_boxes.tensor.shape[-1] == 4


@needs_d2
def test_freeze_at_and_frozen_bn_like_detectron2_resnet(d2):
    from detectron2.layers import FrozenBatchNorm2d as D2FrozenBN
    from detectron2.modeling import build_model
    from torchvision.ops.misc import FrozenBatchNorm2d
    # Detectron2's own ResNet with FREEZE_AT=2: stem and res2 get no gradients
    ours = build_model(d2_cfg(d2, 'rcnn', 'ResNet', dict(depth=50)))
    d2_resnet_cfg = d2_cfg(d2, 'rcnn', 'ResNet', dict(depth=50))
    d2_resnet_cfg.MODEL.BACKBONE.NAME = 'build_resnet_fpn_backbone'
    reference = build_model(d2_resnet_cfg)
    ref_frozen = {n.split('.')[0] for n, p in reference.backbone.bottom_up.named_parameters()
                  if not p.requires_grad}
    assert ref_frozen == {'stem', 'res2'}
    ours.train()
    body = ours.backbone.bottom_up.body
    frozen = {n.split('.')[0] for n, p in body.named_parameters() if not p.requires_grad}
    assert frozen == {'stem', 'stage2'}
    trainable_convs = sum(p.numel() for n, p in body.named_parameters()
                          if p.requires_grad and p.dim() == 4)
    ref_trainable_convs = sum(p.numel() for p in reference.backbone.bottom_up.parameters()
                              if p.requires_grad and p.dim() == 4)
    assert trainable_convs == ref_trainable_convs > 0  # the same weights train
    # NORM=FrozenBN: every norm is frozen in both
    cfg = d2_cfg(d2, 'rcnn', 'VoVNet', dict(depth=39), norm='FrozenBN', freeze_at=0)
    body = build_model(cfg).backbone.bottom_up.body
    norms = [m for m in body.modules() if 'BatchNorm' in type(m).__name__]
    assert norms and all(isinstance(m, (FrozenBatchNorm2d, D2FrozenBN)) for m in norms)
    assert not any(p.requires_grad for m in norms for p in m.parameters())


@needs_d2
def test_published_checkpoint_loads_into_a_detectron2_model(d2, tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model
    from mmbackbones import CheckpointError
    from mmbackbones.publish import publish_checkpoint
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    from convert_to_detectron2 import convert
    source, raw = random_release(tmp_path, 'VoVNet-39')
    release = publish_checkpoint(str(raw), str(tmp_path / 'vovnet39.pth'))
    model = build_model(d2_cfg(d2, 'retinanet', 'VoVNet', dict(depth=39)))
    report = d2.load_pretrained(model, release)
    assert report.loaded == len(source.state_dict())
    body = model.backbone.bottom_up.body
    for key, value in source.state_dict().items():
        assert torch.equal(body.state_dict()[key], value), key
    # the converter + Detectron2's own checkpointer
    converted = tmp_path / 'd2.pth'
    # a random release records no network: name it (a trained one's meta.backbone does)
    assert convert(release, str(converted), backbone='VoVNet-39') == len(source.state_dict())
    fresh = build_model(d2_cfg(d2, 'retinanet', 'VoVNet', dict(depth=39)))
    incompatible = DetectionCheckpointer(fresh).load(str(converted))
    for key, value in source.state_dict().items():
        assert torch.equal(fresh.backbone.bottom_up.body.state_dict()[key], value), key
    assert incompatible is not None
    # another architecture: a clear error
    other = build_model(d2_cfg(d2, 'retinanet', 'VoVNet', dict(depth=57)))
    with pytest.raises(CheckpointError, match='does not fit VoVNet'):
        d2.load_pretrained(other, release)


#: configs of public COCO detectors (vovnet-detectron2's, Detectron2's model zoo): built,
#: checked and loaded in their sources' layouts in test_detector_weights.py
ZOO_CONFIGS = {os.path.join(ROOT, config) for entry in DETECTORS for config in entry.configs}
YACS_CONFIGS = sorted(p for p in glob.glob(os.path.join(ROOT, 'configs', 'detectron2', '*.yaml'))
                      if p not in ZOO_CONFIGS)
LAZY_CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', 'detectron2', 'lazy', '[!_]*.py')))


def test_configs_for_every_pair_are_here():
    names = {os.path.basename(p) for p in YACS_CONFIGS + LAZY_CONFIGS}
    for det in ('retinanet', 'faster_rcnn'):
        for backbone in ('vovnet39', 'vovnet57', 'vovnet99', 'darknet53', 'cspdarknet53'):
            assert f'{det}_{backbone}_fpn_1x.yaml' in names and f'{det}_{backbone}_fpn.py' in names


@needs_d2
@pytest.mark.parametrize('path', [p for p in YACS_CONFIGS if 'Base-' not in p],
                         ids=os.path.basename)
def test_yacs_configs_build(d2, path):
    """Self-contained: merged as they are, after our node, like the tool does."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from torchvision.ops.misc import FrozenBatchNorm2d
    cfg = get_cfg()
    d2.add_mmbackbones_config(cfg)
    cfg.merge_from_file(path)
    public = cfg.MODEL.MMBACKBONES.PRETRAINED.startswith('mmbackbones://')
    # public files take the input they were trained on (vovnet-detectron2's: BGR)
    assert cfg.MODEL.BACKBONE.FREEZE_AT == 2 and cfg.INPUT.FORMAT in ('RGB', 'BGR')
    assert public == ('public' in os.path.basename(path))
    named = cfg.MODEL.MMBACKBONES.PRETRAINED
    cfg.MODEL.MMBACKBONES.PRETRAINED = ''  # releases are not in the test tree; no download
    cfg.MODEL.MMBACKBONES.ARGS.pop('weights', None)
    cfg.MODEL.DEVICE = 'cpu'
    model = build_model(cfg)
    body = model.backbone.bottom_up.body
    assert type(body).__name__ == cfg.MODEL.MMBACKBONES.TYPE and body.frozen_stages == 1
    if cfg.MODEL.MMBACKBONES.NORM == 'FrozenBN':  # BN: a timm ConvNeXt has none to freeze
        assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    else:
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert model.backbone.size_divisibility == 32
    if public:  # the config's network is the one the named file holds
        from mmbackbones.loader import check_network, network
        from mmbackbones.weights.catalog import lookup
        entry = lookup(named)
        check_network(body, entry.type, network(entry.type, entry.kwargs).arch_args(), named)


@needs_d2
@pytest.mark.parametrize('path', LAZY_CONFIGS, ids=os.path.basename)
def test_lazy_configs_build(d2, path):
    from detectron2.config import LazyConfig, instantiate
    cfg = LazyConfig.load(path)
    assert {'model', 'dataloader', 'optimizer', 'lr_multiplier', 'train'} <= set(cfg)
    body_cfg = cfg.model.backbone.bottom_up.body
    init_cfg = body_cfg.pop('init_cfg', None)
    if init_cfg is None:  # timm's published file by tag
        assert body_cfg.pop('weights') is True
    else:
        assert init_cfg.checkpoint.startswith(('checkpoints/', 'mmbackbones://'))
    model = instantiate(cfg.model)
    body = model.backbone.bottom_up.body
    assert body.frozen_stages == 1 and model.input_format in ('RGB', 'BGR')


@needs_d2
def test_pretrained_key_loads_strictly(d2, tmp_path):
    from detectron2.modeling import build_model
    from mmbackbones import CheckpointError
    source, path = random_release(tmp_path)
    cfg = d2_cfg(d2, 'retinanet', 'VoVNet', dict(depth=19, slim=True))
    cfg.MODEL.MMBACKBONES.PRETRAINED = str(path)
    body = build_model(cfg).backbone.bottom_up.body
    assert torch.equal(body.stage5[1].concat_conv.conv.weight,
                       source.stage5[1].concat_conv.conv.weight)
    cfg.MODEL.MMBACKBONES.ARGS = type(cfg.MODEL.MMBACKBONES.ARGS)(dict(depth=19))
    with pytest.raises(CheckpointError, match='does not fit VoVNet'):
        build_model(cfg)


@needs_d2
@pytest.mark.slow  # trains three short runs
def test_tool_trains_resumes_and_evaluates(tmp_path, monkeypatch, capfd):
    """tools/train_detectron2.py with one process runs in this one (Detectron2's
    launch() calls the work in place): a yacs run trained, continued with --resume,
    evaluated with --eval-only; a LazyConfig run that reads its backbone release."""
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import train_detectron2 as tool
    monkeypatch.setenv('MMBACKBONES_DEMO_ROOT', str(tmp_path / 'digits_det'))
    config = osp.join(ROOT, 'configs', 'detectron2', 'retinanet_vovnet19slim_digits.yaml')
    out = tmp_path / 'run'
    short = ['SOLVER.STEPS', '(9,)', 'SOLVER.WARMUP_ITERS', '1', 'SOLVER.CHECKPOINT_PERIOD',
             '2', 'TEST.EVAL_PERIOD', '0', 'OUTPUT_DIR', str(out)]

    def iteration() -> int:
        return torch.load(out / 'model_final.pth', weights_only=False)['iteration']
    tool.main(['--config-file', config, 'SOLVER.MAX_ITER', '2', *short])
    assert iteration() == 1 and 'copypaste: Task: bbox' in capfd.readouterr().out
    tool.main(['--config-file', config, '--resume', 'SOLVER.MAX_ITER', '3', *short])
    assert iteration() == 2 and 'Starting training from iteration 2' in capfd.readouterr().out
    tool.main(['--config-file', config, '--eval-only', 'MODEL.WEIGHTS',
               str(out / 'model_final.pth'), 'OUTPUT_DIR', str(tmp_path / 'eval')])
    assert 'copypaste: AP,AP50,AP75,APs,APm,APl' in capfd.readouterr().out

    release = tmp_path / 'vovnet39_imagenet.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in
                               build_backbone('VoVNet-39').state_dict().items()}}, release)
    lazy = osp.join(ROOT, 'configs', 'detectron2', 'lazy', 'retinanet_vovnet39_fpn.py')
    tool.main(['--config-file', lazy, 'train.device=cpu', 'train.max_iter=1', 'train.eval_period=0',
               f'train.output_dir={tmp_path / "lazy"}', 'model.num_classes=10',
               f'model.backbone.bottom_up.body.init_cfg.checkpoint={release}',
               'dataloader.train.dataset.names=digits_det_train',
               'dataloader.train.total_batch_size=1', 'dataloader.train.num_workers=0',
               'dataloader.test.dataset.names=digits_det_val', 'dataloader.test.num_workers=0'])
    trained = torch.load(tmp_path / 'lazy' / 'model_final.pth', weights_only=False)['model']
    released = torch.load(release, weights_only=True)['state_dict']
    # the release was loaded, and the frozen stem kept it through training
    assert torch.equal(trained['backbone.bottom_up.body.stem.0.conv.weight'],
                       released['backbone.stem.0.conv.weight'])


@needs_d2
@pytest.mark.parametrize('style', ['res', 'c'])
@pytest.mark.parametrize('meta', ['retinanet', 'rcnn'])
def test_builders_default_to_frozen_bn_and_take_either_naming(d2, style, meta):
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage
    from torchvision.ops.misc import FrozenBatchNorm2d
    features = [f'{style}{i}' for i in (2, 3, 4, 5)]
    cfg = d2_cfg(d2, meta, 'VoVNet', dict(depth=19, slim=True), norm=None, features=features)
    assert cfg.MODEL.MMBACKBONES.NORM == 'FrozenBN'
    model = build_model(cfg)
    body = model.backbone.bottom_up.body
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    if meta == 'retinanet':  # P6/P7 from C5, whatever its name
        assert model.backbone.top_block.in_feature == f'{style}5'
    model.train()
    with EventStorage(0):
        losses = model(demo_inputs())
    assert torch.isfinite(sum(losses.values()))


@needs_d2
def test_init_cfg_in_args_is_applied_strictly(d2, tmp_path):
    from detectron2.modeling import build_model
    from mmbackbones import CheckpointError
    source, path = random_release(tmp_path)
    init = dict(type='Pretrained', checkpoint=str(path), prefix='backbone.')
    model = build_model(d2_cfg(d2, 'retinanet', 'VoVNet', dict(depth=19, slim=True,
                                                                init_cfg=init)))
    body = model.backbone.bottom_up.body
    for key, value in source.state_dict().items():
        assert torch.equal(body.state_dict()[key], value), key
    with pytest.raises(CheckpointError, match='does not fit VoVNet'):
        build_model(d2_cfg(d2, 'retinanet', 'VoVNet', dict(depth=39, init_cfg=init)))


@needs_d2
def test_public_vovnet_detectron2_file_loads_both_ways(d2, tmp_path):
    """A vovnet-detectron2 V-19-eSE file: load_pretrained converts it, and
    convert_to_detectron2.py writes it for MODEL.WEIGHTS."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model
    from public_layouts import vovnet_detectron2_state
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    from convert_to_detectron2 import convert
    state = vovnet_detectron2_state(19)
    path = tmp_path / 'V-19-eSE.pth'
    torch.save(state, path)
    args = dict(depth=19, stem_stride=4)
    model = build_model(d2_cfg(d2, 'retinanet', 'VoVNet', args))
    d2.load_pretrained(model, str(path))
    body = model.backbone.bottom_up.body
    assert torch.equal(body.stage3[1].concat_conv.conv.weight,
                       state['stage3.OSA3_1.concat.OSA3_1_concat/conv.weight'])
    converted = tmp_path / 'd2.pth'
    assert convert(str(path), str(converted)) == len(body.state_dict())
    fresh = build_model(d2_cfg(d2, 'retinanet', 'VoVNet', args))
    DetectionCheckpointer(fresh).load(str(converted))
    assert torch.equal(fresh.backbone.bottom_up.body.stage3[1].concat_conv.conv.weight,
                       state['stage3.OSA3_1.concat.OSA3_1_concat/conv.weight'])


def test_resume_keeps_the_imagenet_file_until_a_checkpoint_exists(tmp_path):
    """A requeued job's first start (--resume, nothing saved yet) must not train
    from a random backbone: PRETRAINED is dropped only when --resume will find a
    checkpoint (Detectron2's last_checkpoint naming a file that exists)."""
    from mmbackbones.adapters.naming import has_checkpoint
    assert not has_checkpoint(str(tmp_path))
    (tmp_path / 'last_checkpoint').write_text('model_0000999.pth')
    assert not has_checkpoint(str(tmp_path))  # named, but not there
    (tmp_path / 'model_0000999.pth').write_bytes(b'')
    assert has_checkpoint(str(tmp_path))


@pytest.mark.slow  # TorchScript and ONNX exports
@needs_d2
@pytest.mark.parametrize('meta', ['retinanet', 'rcnn'])
def test_detectron2_export_equals_eager(d2, meta, tmp_path):
    """Detectron2's own export path (TracingAdapter): TorchScript, and ONNX run in
    ONNX Runtime, give the eager model's detections (labels, boxes 1e-3, scores
    1e-4) on a real photo; no top-k cut, so that near-equal scores of the
    heads cannot fall either side of it, and classifiers with spread scores (an
    initialised head scores everything at its prior, and NMS of ties is arbitrary)."""
    import cv2
    from detectron2.modeling import build_model

    from mmbackbones.datasets.photos import write_sample_photos
    from mmbackbones.export import run_onnxruntime
    from mmbackbones.export.detector import compare_detections
    from mmbackbones.export.detectron2 import export_detectron2
    cfg = d2_cfg(d2, meta, 'VoVNet', dict(depth=19, slim=True))
    # RetinaNet: ~1k boxes into NMS, not ~20k: with ~20k, some IoU falls within float
    # rounding of NMS_THRESH_TEST and the eager model (torchvision's per-class NMS loop
    # above 1000 boxes on CPU) and the trace (its coordinate-offset NMS) or ONNX Runtime
    # keep different boxes (about 1 run in 5, with the backbone unseeded)
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST, cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.7, 0.05
    cfg.MODEL.RETINANET.TOPK_CANDIDATES_TEST = cfg.TEST.DETECTIONS_PER_IMAGE = 10**5
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 10**5
    torch.manual_seed(0)  # the backbone too: the same model, and detections, every run
    model = build_model(cfg).eval()
    for name, layer in model.named_modules():  # the heads, as PyTorch initialises layers
        if not name.startswith('backbone') and isinstance(layer, (torch.nn.Conv2d,
                                                                  torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    for classifier in ('head.cls_score', 'proposal_generator.rpn_head.objectness_logits',
                       'roi_heads.box_predictor.cls_score'):  # logits of a few units, not ~0
        if classifier in dict(model.named_modules()):
            dict(model.named_modules())[classifier].weight.data.mul_(30)
    photo = cv2.resize(cv2.imread(write_sample_photos(str(tmp_path / 'photos'), 1)[0]),
                       (128, 96))
    image = torch.from_numpy(photo[:, :, ::-1].copy()).permute(2, 0, 1).float()

    def detections(flat):
        instances = adapter.outputs_schema(flat)[0]['instances']
        return dict(bboxes=instances.pred_boxes.tensor, scores=instances.scores,
                    labels=instances.pred_classes)
    path, adapter = export_detectron2(model, image, str(tmp_path / 'model.ts'))
    with torch.no_grad():
        expected = detections(adapter(image))
        traced = detections(torch.jit.load(path)(image))
    assert len(expected['scores']) > 10
    assert compare_detections(expected, traced) is None
    path, _ = export_detectron2(model, image, str(tmp_path / 'model.onnx'), format='onnx')
    onnx = [torch.from_numpy(t) for t in run_onnxruntime(path, image.numpy())]
    assert compare_detections(expected, detections(onnx)) is None


@needs_d2
def test_model_weights_must_load_every_backbone_tensor(d2, tmp_path, monkeypatch):
    """Detectron2's checkpointer only logs keys it cannot load: a backbone file
    converted for the plain builder, given to an FPN model, would load nothing
    into the backbone. The trainer's and the tool's checkpointer refuse it."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.engine import default_argument_parser
    from mmbackbones import CheckpointError
    from mmbackbones.adapters import detectron2_engine
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    from convert_to_detectron2 import convert
    source, release = random_release(tmp_path)
    files = {arch: tmp_path / f'{arch}.pth' for arch in ('plain', 'fpn')}
    for arch, path in files.items():
        convert(str(release), str(path), arch=arch, backbone='VoVNet-19-slim')
    cfg = d2_cfg(d2, 'retinanet', 'VoVNet', dict(depth=19, slim=True))
    from detectron2.modeling import build_model
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.backbone.bottom_up.body.state_dict().items()}
    DetectionCheckpointer(model).load(str(files['plain']))  # Detectron2's own: silent
    assert all(torch.equal(v, before[k])
               for k, v in model.backbone.bottom_up.body.state_dict().items())
    with pytest.raises(CheckpointError, match=r"backbone\.bottom_up\.body\..*not in the file"
                                              r".*--arch fpn"):
        d2.StrictDetectionCheckpointer(model).load(str(files['plain']))
    d2.StrictDetectionCheckpointer(model).load(str(files['fpn']))
    for key, value in source.state_dict().items():
        assert torch.equal(model.backbone.bottom_up.body.state_dict()[key], value), key

    # the tool: --eval-only with MODEL.WEIGHTS, and the trainer's checkpointer
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('MMBACKBONES_DEMO_ROOT', str(tmp_path / 'digits_det'))
    config = os.path.join(ROOT, 'configs/detectron2/retinanet_vovnet19slim_digits.yaml')
    args = default_argument_parser().parse_args(
        ['--config-file', config, '--eval-only', 'MODEL.WEIGHTS', str(files['plain']),
         'OUTPUT_DIR', str(tmp_path / 'out')])
    with pytest.raises(CheckpointError, match='not in the file'):
        detectron2_engine.main(args)
    args.eval_only = False
    trainer = detectron2_engine.Trainer(detectron2_engine.setup_yacs(args))
    assert isinstance(trainer.checkpointer, d2.StrictDetectionCheckpointer)
    periodic = [h for h in trainer._hooks if hasattr(h, 'checkpointer')]
    assert periodic and all(h.checkpointer is trainer.checkpointer for h in periodic)
    with pytest.raises(CheckpointError, match='not in the file'):
        trainer.resume_or_load(resume=False)


@needs_d2
def test_register_coco_checks_the_set_before_anything_is_built(tmp_path):
    """``--register-coco NAME ANN_FILE IMAGE_DIR``: a missing file or folder is
    named; the same set again (several runs in one process) is no error; a name
    Detectron2 already holds for another set is."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from mmbackbones.adapters.detectron2_engine import register_coco_sets
    ann, images = tmp_path / 'train.json', tmp_path / 'train'
    with pytest.raises(FileNotFoundError, match=rf'--register-coco mine: ANN_FILE {ann} '):
        register_coco_sets([('mine', str(ann), str(images))])
    ann.write_text('{}')
    with pytest.raises(FileNotFoundError, match=rf'--register-coco mine: IMAGE_DIR {images} '):
        register_coco_sets([('mine', str(ann), str(images))])
    images.mkdir()
    name = f'mine_{tmp_path.name}'
    try:
        for _ in range(2):
            register_coco_sets([(name, str(ann), str(images))])
        assert MetadataCatalog.get(name).json_file == str(ann)
        with pytest.raises(ValueError, match=rf'--register-coco {name}: Detectron2 already '):
            register_coco_sets([(name, str(tmp_path / 'other.json'), str(images))])
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
