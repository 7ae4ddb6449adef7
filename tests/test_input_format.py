"""The input each weights file was trained on (mmbackbones.weights.input_format):
one record per named file, which --list and docs/weights.md print and the shipped
configs are checked against; and the check at the start of training, testing and
deployment that a config feeds the loaded weights that input (mmbackbones.input_check).
Nothing here reaches beyond 127.0.0.1."""
import copy
import importlib.util
import io
import os
import os.path as osp
import re
import sys
from contextlib import redirect_stdout

import pytest
import torch
import yaml
from mmengine.config import Config

import mmbackbones  # noqa: F401
from mmbackbones import input_check
from mmbackbones.input_check import check_config, check_detectron2_config, check_lazy_config
from mmbackbones.publish import write_release
from mmbackbones.weights.catalog import WeightsEntry, catalog
from mmbackbones.weights.input_format import (DETECTRON2_BGR, HALF_RGB, IMAGENET_RGB,
                                              from_detectron2, from_preprocessor)
from training_utils import ROOT

DET = osp.join(ROOT, 'configs', 'detection')
D2 = osp.join(ROOT, 'configs', 'detectron2')
D2_MEAN, D2_STD = [103.53, 116.28, 123.675], [1.0, 1.0, 1.0]
IMAGENET_PREPROCESSOR = dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                             std=[58.395, 57.12, 57.375], bgr_to_rgb=True)


@pytest.fixture(autouse=True)
def default_mode(monkeypatch):
    monkeypatch.delenv(input_check.CHECK_ENV, raising=False)


# -- one record of each file's input ---------------------------------------------------
def test_vovnet_detectron2_files_expect_detectron2s_default_input():
    """vovnet-detectron2's configs inherit Detectron2's defaults: BGR, its mean, std 1
    (the catalog said ImageNet's std, 57.375 ...: DD3D's choice, not theirs)."""
    for depth in (19, 39, 57, 99):
        trained_on = catalog()[f'vovnet-detectron2/V-{depth}-eSE'].normalization
        assert trained_on.order == 'BGR'
        assert trained_on.pixel_mean == tuple(D2_MEAN)
        assert trained_on.pixel_std == tuple(D2_STD)


def test_list_prints_each_files_input_from_the_catalog():
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import convert_weights as tool
    out = io.StringIO()
    with redirect_stdout(out):
        tool.main(['--list'])
    text = out.getvalue()
    assert ("input: BGR 0-255, Detectron2's mean, std 1: BGR 0-255, mean "
            '[103.53, 116.28, 123.675], std [1.0, 1.0, 1.0]') in text
    assert 'std [57.375' not in text
    assert text.count('input: ') == len(catalog())
    assert 'input: RGB, mean = std = 0.5: RGB 0-1, mean [0.5, 0.5, 0.5]' in text


def _docs_rows():
    """``{name pattern: input cell}`` of the table under docs/weights.md's
    'Weights by name'."""
    text = open(osp.join(ROOT, 'docs', 'weights.md')).read()
    section = text.split('## Weights by name', 1)[1]
    lines = [line for line in section.split('```', 1)[0].splitlines() if line.startswith('|')]
    header = [c.strip() for c in lines[0].strip('|').split('|')]
    column = header.index('input')
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip('|').split('|')]
        rows[re.search(r'`([^`]+)`', cells[0]).group(1)] = cells[column]
    return rows


def _expand(pattern: str):
    names = catalog()
    if '<' in pattern:
        return [n for n in names if n.startswith(pattern.split('<')[0])]
    braces = re.search(r'\{([^}]+)\}', pattern)
    if braces:
        return [pattern.replace(braces.group(0), part) for part in braces.group(1).split(',')]
    return [pattern]


def test_docs_table_shows_the_catalogs_input_for_every_file():
    covered = set()
    for pattern, cell in _docs_rows().items():
        for name in _expand(pattern):
            assert catalog()[name].normalization.label == cell, name
            covered.add(name)
    assert covered == set(catalog())


def _package_config(package: str, path: str) -> Config:
    """A config that an OpenMMLab package ships (``<package>::<path>``)."""
    module = __import__(package)
    return Config.fromfile(osp.join(osp.dirname(module.__file__), '.mim', 'configs', path))


def test_catalog_agrees_with_each_sources_own_record():
    """timm's pretrained_cfg, torchvision's transforms(), MMDetection's YOLOv3 and
    MMPretrain's ResNet-50 configs state what the catalog says."""
    import timm
    names = catalog()
    for name in ('timm/darknet53.c2ns_in1k', 'timm/ese_vovnet39b.ra_in1k',
                 'timm/ese_vovnet57b.ra4_e3600_r256_in1k'):
        cfg = timm.models.get_pretrained_cfg(name.split('/', 1)[1])
        stated = from_preprocessor(dict(mean=[m * 255 for m in cfg.mean],
                                        std=[s * 255 for s in cfg.std], bgr_to_rgb=True))
        assert stated.same_input(names[name].normalization), name
    assert names['timm/ese_vovnet57b.ra4_e3600_r256_in1k'].normalization is HALF_RGB
    assert names['torchvision/ResNet50_Weights.IMAGENET1K_V2'].normalization is IMAGENET_RGB
    yolo = _package_config('mmdet', 'yolo/yolov3_d53_8xb8-ms-608-273e_coco.py')
    assert from_preprocessor(yolo.model.data_preprocessor).same_input(
        names['mmdet/darknet53'].normalization)
    resnet = _package_config('mmpretrain', 'resnet/resnet50_8xb32_in1k.py')
    assert from_preprocessor(resnet.data_preprocessor).same_input(
        names['mmpretrain/resnet50_8xb32_in1k'].normalization)


def test_the_recipe_trains_on_what_the_detection_configs_feed():
    """Releases of the ImageNet recipe were trained on its preprocessor's input:
    the detection configs (MMDetection, Detectron2) that start from them give the same."""
    recipe = from_preprocessor(Config.fromfile(
        osp.join(ROOT, 'configs', '_base_', 'imagenet_recipe.py')).data_preprocessor)
    assert recipe.same_input(IMAGENET_RGB)
    base = Config.fromfile(osp.join(DET, '_base_', 'mmbackbones.py'))
    assert from_preprocessor(base.imagenet_preprocessor).same_input(recipe)
    assert from_preprocessor(base.detectron2_preprocessor).same_input(DETECTRON2_BGR)
    for name in ('Base-RetinaNet-MMBackbones.yaml', 'Base-RCNN-FPN-MMBackbones.yaml'):
        d2 = _yacs(osp.join(D2, name))
        assert from_detectron2(d2['MODEL']['PIXEL_MEAN'], d2['MODEL']['PIXEL_STD'],
                               d2['INPUT']['FORMAT']).same_input(recipe), name


# -- the shipped configs feed their weights what they were trained on ----------------
#: configs whose weights are public files (by name, or timm's own; a detector's
#: file in load_from: the fine-tuning examples)
PUBLIC_WEIGHTS = sorted(n for n in os.listdir(DET) if n.endswith('.py') and (
    '-public' in n or n.startswith(('retinanet_convnext', 'faster-rcnn_regnety'))
    or "load_from = 'mmbackbones://" in open(osp.join(DET, n)).read()))


@pytest.mark.parametrize('name', PUBLIC_WEIGHTS)
def test_shipped_detection_configs_feed_their_weights_input(name):
    cfg = Config.fromfile(osp.join(DET, name))
    cfg.input_check = 'error'
    assert check_config(cfg) is None
    assert input_check.config_expects(cfg) is not None  # checked, not skipped


def test_the_other_detection_configs_feed_the_recipes_input():
    """They start from releases of the ImageNet recipe (checkpoints/, absent here),
    trained on its input, which imagenet_preprocessor is (tested above). (Configs
    of public COCO detectors feed their files' input: test_detector_weights.py.)"""
    from mmbackbones.weights.detectors import DETECTORS
    zoo = {osp.basename(c) for entry in DETECTORS for c in entry.configs}
    others = [n for n in os.listdir(DET) if n.endswith('.py') and n not in PUBLIC_WEIGHTS
              and n not in zoo]
    assert len(others) >= 10
    for name in others:
        text = open(osp.join(DET, name)).read()
        assert 'data_preprocessor={{_base_.imagenet_preprocessor}}' in text, name


def _yacs(path: str) -> dict:
    """A Detectron2 yacs file with its ``_BASE_`` files merged (no Detectron2)."""
    with open(path) as f:
        node = yaml.safe_load(f)
    base = node.pop('_BASE_', None)
    if base is None:
        return node
    merged = _yacs(osp.join(osp.dirname(path), base))

    def merge(into, new):
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value
    merge(merged, node)
    return merged


@pytest.mark.parametrize('name', sorted(n for n in os.listdir(D2) if n.endswith('.yaml')))
def test_shipped_detectron2_configs_feed_their_weights_input(name):
    cfg = _yacs(osp.join(D2, name))
    cfg['MODEL']['MMBACKBONES']['INPUT_CHECK'] = 'error'
    assert check_detectron2_config(cfg) is None
    if '_public_' in name or 'convnext' in name:  # named files, timm's own
        assert input_check.detectron2_expects(cfg) is not None  # checked, not skipped


# -- a config that feeds another input -----------------------------------------------
def public_vovnet39_with(preprocessor, **options) -> Config:
    cfg = Config.fromfile(osp.join(DET, 'retinanet_vovnet39-public_fpn_1x_coco.py'))
    cfg.model.data_preprocessor = preprocessor
    cfg.merge_from_dict(options)
    return cfg


def test_mmdetections_default_input_for_a_detectron2_file_is_a_warning_naming_both():
    cfg = public_vovnet39_with(IMAGENET_PREPROCESSOR)
    message = check_config(cfg)
    assert "model.backbone.init_cfg checkpoint 'mmbackbones://vovnet-detectron2/V-39-eSE'" \
        in message
    assert 'trained on BGR, mean [103.53, 116.28, 123.675], std [1.0, 1.0, 1.0]' in message
    assert 'model.data_preprocessor gives RGB, mean [123.675, 116.28, 103.53], std ' \
           '[58.395, 57.12, 57.375]' in message
    assert ('model.data_preprocessor=dict(mean=[103.53, 116.28, 123.675], std=[1.0, 1.0, '
            '1.0], bgr_to_rgb=False)') in message
    assert "input_check='error'" in message


def test_strictness_is_asked_for_in_the_config_or_the_environment(monkeypatch):
    with pytest.raises(ValueError, match=r'^input check: the weights of .*V-39-eSE'):
        check_config(public_vovnet39_with(IMAGENET_PREPROCESSOR, input_check='error'))
    assert check_config(public_vovnet39_with(IMAGENET_PREPROCESSOR, input_check='off')) is None
    monkeypatch.setenv(input_check.CHECK_ENV, 'error')
    with pytest.raises(ValueError, match='input check'):
        check_config(public_vovnet39_with(IMAGENET_PREPROCESSOR))
    assert check_config(public_vovnet39_with(IMAGENET_PREPROCESSOR, input_check='warn'))
    with pytest.raises(ValueError, match=r"input_check='strict' is not a choice; valid: "
                                         r"\('warn', 'error', 'off'\)"):
        check_config(public_vovnet39_with(IMAGENET_PREPROCESSOR, input_check='strict'))


def test_only_the_channel_order_differs():
    message = check_config(public_vovnet39_with(dict(mean=D2_MEAN, std=D2_STD,
                                                     bgr_to_rgb=True)))
    assert 'gives RGB, mean [103.53' in message and 'bgr_to_rgb=False' in message
    assert check_config(public_vovnet39_with(dict(mean=D2_MEAN, std=D2_STD))) is None


def test_train_tool_warns_before_the_runner(det_root):
    """tools/train.py (prepare_config): the demo detector given vovnet-detectron2's
    V-19 file by name, with the demo's RGB ImageNet preprocessor."""
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import train as train_tool
    args = train_tool.parse_args([
        osp.join(ROOT, 'configs', 'demo', 'retinanet_vovnet19slim_digits.py'),
        '--skip-memory-check', '--work-dir', osp.join(det_root, '..', 'input_check'),
        '--cfg-options', f'data_root={det_root}/', 'input_check=error',
        'model.backbone.init_cfg.checkpoint=mmbackbones://vovnet-detectron2/V-19-eSE'])
    with pytest.raises(ValueError, match=r"input check: .*'mmbackbones://vovnet-detectron2/"
                                         r"V-19-eSE'.* trained on BGR"):
        train_tool.build_config(args)


def test_timm_weights_expect_timms_own_input():
    """ese_vovnet57b's r256 file: mean = std = 0.5, from timm's pretrained_cfg (no
    download)."""
    cfg = Config.fromfile(osp.join(DET, 'retinanet_convnext-tiny_fpn_1x_coco.py'))
    cfg.model.backbone.model_name = 'ese_vovnet57b.ra4_e3600_r256_in1k'
    message = check_config(cfg)
    assert "model.backbone.weights (timm's file for 'ese_vovnet57b.ra4_e3600_r256_in1k')" \
        in message
    assert 'trained on RGB, mean [127.5, 127.5, 127.5], std [127.5, 127.5, 127.5]' in message


def test_schemes_and_addresses_of_catalog_files_are_known():
    assert input_check.entry_for('open-mmlab://darknet53').name == 'mmdet/darknet53'
    assert input_check.entry_for('torchvision://resnet50').name == \
        'torchvision/ResNet50_Weights.IMAGENET1K_V1'
    entry = catalog()['vovnet-detectron2/V-39-eSE']
    assert input_check.entry_for(entry.url) is entry
    assert input_check.expected_of('https://example.com/other.pth') is None
    found, origin = input_check.backbone_expects(  # weights=<source>: its file for the network
        dict(type='VoVNet', depth=39, stem_stride=4, weights='vovnet-detectron2'), 'backbone')
    assert found is DETECTRON2_BGR and origin == 'backbone.weights (vovnet-detectron2/V-39-eSE)'


# -- files of this project record their input ---------------------------------------
def test_release_and_runner_checkpoint_tell_their_input(tmp_path):
    """A release's meta.input; a Runner checkpoint's training config (meta.cfg). The
    weights that replace every other (load_from, a deployment's checkpoint) count
    first."""
    release = write_release({'w': torch.zeros(1)}, dict(input=DETECTRON2_BGR.record()),
                            str(tmp_path / 'release.pth'))
    assert input_check.expected_of(release).same_input(DETECTRON2_BGR)
    trained = Config(dict(model=dict(type='RetinaNet', data_preprocessor=dict(
        type='DetDataPreprocessor', mean=D2_MEAN, std=D2_STD, bgr_to_rgb=False))))
    runner_file = str(tmp_path / 'epoch_1.pth')
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': {'cfg': trained.pretty_text}},
               runner_file)
    assert input_check.expected_of(runner_file).same_input(DETECTRON2_BGR)
    assert input_check.input_record(torch.load(runner_file)) == DETECTRON2_BGR.record()

    cfg = Config.fromfile(osp.join(DET, 'retinanet_vovnet39_fpn_1x_coco.py'))
    assert check_config(cfg) is None  # checkpoints/vovnet39_imagenet.pth: not there, unknown
    message = check_config(cfg, checkpoint=runner_file)  # tools/deploy.py
    assert f"the checkpoint {runner_file!r}" in message and 'std [1.0, 1.0, 1.0]' in message
    cfg.load_from = release  # tools/test.py, --load-from, --resume
    assert f"the checkpoint {release!r}" in check_config(cfg)
    cfg.model.data_preprocessor = dict(type='DetDataPreprocessor', mean=D2_MEAN, std=D2_STD)
    assert check_config(cfg) is None


def test_convert_weights_records_a_named_files_input(tmp_path, monkeypatch):
    """tools/convert_weights.py NAME OUT: the release carries the catalog's input,
    and a config that loads it with another preprocessor is told."""
    from local_files import serving
    from public_layouts import vovnet_detectron2_state
    monkeypatch.setenv('MMBACKBONES_WEIGHTS_DIR', str(tmp_path / 'cache'))
    for name in ('MMBACKBONES_OFFLINE', 'HF_HUB_OFFLINE'):
        monkeypatch.delenv(name, raising=False)
    buffer = io.BytesIO()
    torch.save(vovnet_detectron2_state(19), buffer)
    name = 'test-input/V-19-eSE'
    with serving({'V-19-eSE.pth': buffer.getvalue()}) as server:
        catalog()[name] = WeightsEntry(
            name, server.url('V-19-eSE.pth'), 'VoVNet', dict(depth=19, stem_stride=4),
            'vovnet-detectron2:V-19-eSE', 'test', 224, DETECTRON2_BGR)
        try:
            sys.path.insert(0, osp.join(ROOT, 'tools'))
            import convert_weights as tool
            out = io.StringIO()
            with redirect_stdout(out):
                path = tool.main([name, str(tmp_path / 'v19.pth')])
        finally:
            catalog().pop(name)
    assert 'trained on BGR, mean [103.53, 116.28, 123.675], std [1.0, 1.0, 1.0]' \
        in out.getvalue()
    assert torch.load(path, weights_only=True)['meta']['input'] == DETECTRON2_BGR.record()
    cfg = Config.fromfile(osp.join(DET, 'retinanet_vovnet39_fpn_1x_coco.py'))
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'v19.pth')
    assert f"init_cfg checkpoint '{tmp_path / 'v19.pth'}'" in check_config(cfg)


# -- Detectron2 (its settings as a plain dict or a yacs node: no Detectron2 needed) ----
def test_detectron2_yacs_settings_against_the_pretrained_file():
    cfg = _yacs(osp.join(D2, 'retinanet_vovnet39_public_fpn_1x.yaml'))
    assert check_detectron2_config(cfg) is None
    wrong = copy.deepcopy(cfg)
    wrong['INPUT']['FORMAT'] = 'RGB'  # the base's
    message = check_detectron2_config(wrong)
    assert "MODEL.MMBACKBONES.PRETRAINED 'mmbackbones://vovnet-detectron2/V-39-eSE'" in message
    assert 'MODEL.PIXEL_MEAN/PIXEL_STD and INPUT.FORMAT gives RGB, mean [103.53' in message
    assert ('MODEL.PIXEL_MEAN [103.53, 116.28, 123.675] MODEL.PIXEL_STD [1.0, 1.0, 1.0] '
            'INPUT.FORMAT BGR') in message
    wrong['MODEL']['MMBACKBONES']['INPUT_CHECK'] = 'error'
    with pytest.raises(ValueError, match='input check'):
        check_detectron2_config(wrong)
    # keys left out are Detectron2's defaults: exactly what the file was trained on
    defaults = {'MODEL': {'MMBACKBONES': {'PRETRAINED': 'vovnet-detectron2/V-39-eSE'}}}
    assert check_detectron2_config(defaults) is None
    yacs = pytest.importorskip('yacs.config')
    node = yacs.CfgNode(wrong)
    with pytest.raises(ValueError, match='input check'):
        check_detectron2_config(node)


def test_detectron2_lazy_config_settings_against_the_backbones_file():
    body = dict(name='VoVNet', depth=39, stem_stride=4, init_cfg=dict(
        type='Pretrained', checkpoint='mmbackbones://vovnet-detectron2/V-39-eSE', prefix=None))
    cfg = dict(model=dict(pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12,
                                                                          57.375],
                          input_format='RGB', backbone=dict(bottom_up=dict(body=body))),
               train=dict(init_checkpoint=''))
    message = check_lazy_config(cfg)
    assert "the backbone body.init_cfg checkpoint 'mmbackbones://vovnet-detectron2/V-39-eSE'" \
        in message and "model.input_format='BGR'" in message
    cfg['model'].update(pixel_mean=D2_MEAN, pixel_std=D2_STD, input_format='BGR')
    assert check_lazy_config(cfg) is None


def test_deploy_tool_checks_before_exporting(tmp_path):
    """tools/deploy.py: the checkpoint's training input against the deploy config's."""
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import deploy as deploy_tool
    trained = Config(dict(model=dict(type='RetinaNet', data_preprocessor=dict(
        type='DetDataPreprocessor', mean=D2_MEAN, std=D2_STD, bgr_to_rgb=False))))
    checkpoint = str(tmp_path / 'epoch_1.pth')
    torch.save({'state_dict': {}, 'meta': {'cfg': trained.pretty_text}}, checkpoint)
    with pytest.raises(ValueError, match=rf"input check: the weights of the checkpoint "
                                         rf"'{re.escape(checkpoint)}' were trained on BGR"):
        deploy_tool.main([osp.join(DET, 'retinanet_vovnet39_fpn_1x_coco.py'), checkpoint,
                          '--work-dir', str(tmp_path / 'deploy'),
                          '--cfg-options', 'input_check=error'])
    assert not osp.exists(tmp_path / 'deploy')  # stopped before exporting


@pytest.mark.skipif(importlib.util.find_spec('detectron2') is None,
                    reason='Detectron2 is not installed (not on PyPI)')
def test_detectron2_builder_checks_before_loading():
    """The yacs builders check at build: RGB input for vovnet-detectron2's file is
    refused with INPUT_CHECK error before the file is fetched."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from mmbackbones.adapters import detectron2 as d2
    cfg = d2.add_mmbackbones_config(get_cfg())
    cfg.merge_from_file(osp.join(D2, 'retinanet_vovnet39_public_fpn_1x.yaml'))
    cfg.merge_from_list(['INPUT.FORMAT', 'RGB', 'MODEL.MMBACKBONES.INPUT_CHECK', 'error',
                         'MODEL.DEVICE', 'cpu'])
    with pytest.raises(ValueError, match=r"input check: the weights of MODEL.MMBACKBONES."
                                         r"PRETRAINED 'mmbackbones://vovnet-detectron2/V-39"):
        build_model(cfg)
