"""Mixed precision on CPU and GPU from one config: the machine decides (bf16
autocast of the features + channels-last on a CPU with native bf16, MMEngine's AMP
on CUDA, fp32 otherwise), evaluation and deploy() follow, checkpoints stay fp32."""
import logging
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper, build_optim_wrapper
from torch import nn

import mmbackbones  # noqa: F401  (registers the wrapper and the hook)
from mmbackbones import build_backbone, deploy
from mmbackbones.checkpoint import safe_load
from mmbackbones.engine.precision import (CPU_BF16_ENV, MixedPrecisionHook,
                                          choose_precision, cpu_bf16_supported)
from training_utils import ROOT, random_bn_statistics, run_tool, write_small_config

RECIPE = osp.join(ROOT, 'configs', 'darknet53_imagenet.py')
DETECTOR = osp.join(ROOT, 'configs', 'demo', 'retinanet_vovnet19slim_digits.py')
#: ||bf16 - fp32|| / ||fp32|| of any level's features, random weights and BN
#: statistics, 96 px: measured 0.003 (Darknet, VoVNet) .. 0.012 (ResNet-50)
BF16_RELATIVE_ERROR = 0.02


class LogLines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def log_lines():
    logger = MMLogger.get_current_instance()
    handler = LogLines()
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


def test_cpu_bf16_detection_is_forced_by_the_environment(monkeypatch):
    monkeypatch.setenv(CPU_BF16_ENV, '1')
    assert cpu_bf16_supported()
    monkeypatch.setenv(CPU_BF16_ENV, '0')
    assert not cpu_bf16_supported()
    monkeypatch.setenv(CPU_BF16_ENV, 'yes')
    with pytest.raises(ValueError, match=r"MMBACKBONES_CPU_BF16='yes'; valid: 1 .* or 0"):
        cpu_bf16_supported()


def test_detection_reads_the_cpu_flags_not_the_model(monkeypatch):
    from mmbackbones.engine import precision
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)
    monkeypatch.setattr(precision.platform, 'machine', lambda: 'x86_64')
    monkeypatch.setattr(precision, '_cpu_flags', lambda: frozenset({'avx512f', 'avx512bw'}))
    assert not cpu_bf16_supported()  # AVX512 alone emulates bf16: slower than fp32
    monkeypatch.setattr(precision, '_cpu_flags', lambda: frozenset({'avx512f', 'amx_bf16'}))
    assert cpu_bf16_supported()
    monkeypatch.setattr(precision.platform, 'machine', lambda: 'aarch64')
    monkeypatch.setattr(precision, '_cpu_flags', lambda: frozenset({'asimd', 'bf16'}))
    assert cpu_bf16_supported()


def test_the_recipe_runs_bf16_on_a_cpu_with_bf16(monkeypatch, log_lines):
    monkeypatch.setenv(CPU_BF16_ENV, '1')
    cfg = Config.fromfile(RECIPE)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert choose_precision(cfg, cuda=False) is torch.bfloat16
    # fp32 master weights and no loss scaling (bf16 has fp32's exponent range)
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    hooks = cfg.custom_hooks
    assert dict(type='mmbackbones.MixedPrecisionHook', dtype='bfloat16') in hooks
    assert 'mmbackbones.EpochSeedHook' in [h['type'] for h in hooks]
    choose_precision(cfg, cuda=False)  # idempotent: no second hook
    assert cfg.custom_hooks == hooks
    assert any('bf16 autocast' in line for line in log_lines)
    assert type(build_optim_wrapper(nn.Linear(2, 2), cfg.optim_wrapper)) is OptimWrapper


def test_a_cpu_without_bf16_falls_back_to_fp32_with_one_log_line(monkeypatch, log_lines):
    monkeypatch.setenv(CPU_BF16_ENV, '0')
    cfg = Config.fromfile(RECIPE)
    assert choose_precision(cfg, cuda=False) is None
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    assert [h['type'] for h in cfg.custom_hooks] == ['mmbackbones.EpochSeedHook']
    said = [line for line in log_lines if 'fp32' in line]
    assert len(said) == 1 and 'no native bf16' in said[0], log_lines


def test_cuda_keeps_mmengine_amp_and_its_dtype():
    cfg = Config.fromfile(RECIPE)
    assert choose_precision(cfg, cuda=True) is torch.float16
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    # channels-last; training's autocast is AmpOptimWrapper's (whole model), and
    # evaluation's the hook's, in the same dtype (MMEngine's loops' fp16 would be fp16)
    assert 'fp16' not in cfg.val_cfg and 'fp16' not in cfg.test_cfg
    assert dict(type='mmbackbones.MixedPrecisionHook', dtype=None,
                eval_dtype='float16') in cfg.custom_hooks
    cfg = Config.fromfile(RECIPE)
    cfg.optim_wrapper.dtype = 'bfloat16'
    assert choose_precision(cfg, cuda=True) is torch.bfloat16
    assert dict(type='mmbackbones.MixedPrecisionHook', dtype=None,
                eval_dtype='bfloat16') in cfg.custom_hooks


@pytest.mark.parametrize('hook_args', [dict(dtype='bfloat16'),  # the CPU recipe
                                       dict(eval_dtype='bfloat16')],  # as on CUDA
                         ids=['cpu', 'cuda-style'])
def test_evaluation_reaches_the_training_dtype(hook_args):
    """The dtype the backbone computes in during val_step/test_step (on CPU; the
    CUDA path is the same wrapper on the model's device)."""
    from types import SimpleNamespace

    from mmengine.registry import DefaultScope
    from mmpretrain.models import ImageClassifier
    from mmbackbones.engine.precision import MixedPrecisionHook
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = ImageClassifier(
            backbone=dict(type='mmbackbones.VoVNet', depth=19, slim=True, out_indices=(4, )),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=3, in_channels=512),
            data_preprocessor=dict(type='ClsDataPreprocessor'))
    reached = []
    model.backbone.stage5.register_forward_hook(lambda m, i, o: reached.append(o.dtype))
    MixedPrecisionHook(**hook_args).before_run(SimpleNamespace(model=model))
    model.eval()
    from mmpretrain.structures import DataSample
    batch = dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)],
                 data_samples=[DataSample().set_gt_label(1)])
    with torch.no_grad():
        model.val_step(batch)
        model.test_step(batch)
    assert reached == [torch.bfloat16, torch.bfloat16]


def test_the_hook_autocasts_features_returns_fp32_and_survives_a_deep_copy():
    import copy
    from mmengine.registry import DefaultScope
    from mmpretrain.models import ImageClassifier

    class Runner:  # what the hook reads of MMEngine's Runner
        # another test may have left MMDetection's scope as the default
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            model = ImageClassifier(
                backbone=dict(type='mmbackbones.VoVNet', depth=19, slim=True,
                              out_indices=(4, )),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(type='LinearClsHead', num_classes=3, in_channels=512))

    model = Runner.model
    MixedPrecisionHook(dtype='bfloat16').before_run(Runner)
    seen = []
    model.backbone.register_forward_hook(lambda m, a, out: seen.append(out[-1].dtype))
    conv = model.backbone.stem[0].conv
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64)
    feats = model.extract_feat(x)
    assert seen == [torch.bfloat16] and feats[0].dtype is torch.float32
    assert model(x, mode='tensor').dtype is torch.float32  # the head in fp32
    assert all(p.dtype is torch.float32 for p in model.parameters())
    twin = copy.deepcopy(model)  # e.g. an EMA copy: its own weights, the same autocast
    assert twin.extract_feat.__self__ is twin
    twin.backbone.stem[0].conv.weight.data.zero_()
    assert not torch.equal(twin.extract_feat(x)[0], model.extract_feat(x)[0])


FAMILIES = ['Darknet-19', 'CSPDarknet-19', 'VoVNet-19-slim', 'ResNet-18', 'MobileNetV2',
            'MobileNetV3-small', 'EfficientNet-B0']


def test_families_cover_every_backbone_class():
    from mmbackbones import list_variants
    covered = {list_variants()[name][0] for name in FAMILIES}
    # ResNeXt and Wide-ResNet are ResNet's blocks; timm models are timm's numerics
    assert covered | {'ResNeXt', 'WideResNet'} == set(mmbackbones.list_backbones()) - {
        'Timm'}, covered


@pytest.mark.parametrize('name', FAMILIES)
def test_bf16_features_match_fp32(name):
    torch.manual_seed(0)
    model = random_bn_statistics(build_backbone(name, out_indices=(0, 1, 2, 3, 4)))
    x = torch.rand(2, 3, 96, 96) * 2 - 1
    with torch.no_grad():
        reference = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            autocast = model(x)
        deployed = deploy(model, dtype=torch.bfloat16)(x)
    for level, (ref, a, d) in enumerate(zip(reference, autocast, deployed)):
        assert d.dtype is torch.bfloat16 and d.shape == ref.shape
        for got in (a, d):
            error = ((got.float() - ref).norm() / ref.norm()).item()
            assert error < BF16_RELATIVE_ERROR, (name, level, error)


def test_deploy_rejects_a_non_float_dtype():
    with pytest.raises(ValueError, match='floating-point dtype'):
        deploy(build_backbone('VoVNet-19-slim'), dtype=torch.int8)


@pytest.mark.slow
def test_deploy_bf16_compiles():
    model = random_bn_statistics(build_backbone('VoVNet-19-slim'))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        eager = deploy(model, dtype=torch.bfloat16)(x)
        compiled = deploy(model, dtype=torch.bfloat16, compile=True)(x)
    for a, b in zip(eager, compiled):
        assert b.dtype is torch.bfloat16
        assert ((a.float() - b.float()).norm() / a.float().norm()) < BF16_RELATIVE_ERROR


class PrecisionProbe:
    """Records the dtype of the backbone's output and the weights' memory format
    in training and in validation."""

    def __init__(self, runner):
        self.seen = []
        model = runner.model
        model.backbone.register_forward_hook(self.record)
        self.model = model

    def record(self, module, args, output):
        conv = next(m for m in module.modules() if isinstance(m, nn.Conv2d))
        self.seen.append((module.training, output[-1].dtype,
                          conv.weight.is_contiguous(memory_format=torch.channels_last),
                          args[0].is_contiguous(memory_format=torch.channels_last)))


@pytest.mark.slow
def test_training_and_evaluation_run_in_bf16_with_fp32_checkpoints(
        digits_root, tmp_path, monkeypatch):
    monkeypatch.setenv(CPU_BF16_ENV, '1')
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import test as test_tool
    import train as train_tool
    from mmengine.runner import Runner
    path = write_small_config(tmp_path, digits_root, images=64, epochs=2, validate=True)
    work = tmp_path / 'bf16'
    cfg = train_tool.build_config(train_tool.parse_args([path, '--work-dir', str(work)]))
    runner = Runner.from_cfg(cfg)
    probe = PrecisionProbe(runner)
    runner.train()
    modes = {(training, dtype, cl_weights, cl_input)
             for training, dtype, cl_weights, cl_input in probe.seen}
    assert modes == {(True, torch.bfloat16, True, True),
                     (False, torch.bfloat16, True, True)}, modes
    state = safe_load(str(work / 'epoch_2.pth'))['state_dict']
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float32}

    first_64 = ['--cfg-options', 'test_dataloader.dataset.indices=64']
    bf16 = test_tool.main([path, str(work / 'epoch_2.pth'), '--work-dir', str(work),
                           *first_64])
    fp32 = test_tool.main([path, str(work / 'epoch_2.pth'), '--work-dir', str(work),
                           '--fp32', *first_64])
    # 64 test images: one image is 1.6 %; bf16 may flip a borderline one
    assert abs(bf16['accuracy/top1'] - fp32['accuracy/top1']) <= 2 * 100 / 64


@pytest.mark.slow
def test_resume_across_precisions(digits_root, tmp_path):
    """bf16 for an epoch, resumed in fp32 for the next, resumed in bf16 for the
    last: each resume continues where the last stopped, in its own precision, and
    every checkpoint holds fp32 weights."""
    path = write_small_config(tmp_path, digits_root, images=32, epochs=3)  # 1 step an epoch
    env, work = {CPU_BF16_ENV: '1'}, str(tmp_path / 'work')
    for epoch, args in ((1, []), (2, ['--resume', '--fp32']), (3, ['--resume'])):
        result = run_tool(['tools/train.py', path, '--work-dir', work,
                           '--cfg-options', f'train_cfg.max_epochs={epoch}', *args], env=env)
        log = result.stdout + result.stderr
        if epoch > 1:
            assert f'resumed epoch: {epoch - 1},' in log, log[-2000:]
        assert ('bf16 autocast' in log) == ('--fp32' not in args), log[-2000:]
        state = safe_load(osp.join(work, f'epoch_{epoch}.pth'))
        assert {t.dtype for t in state['state_dict'].values() if t.is_floating_point()} == {
            torch.float32}


@pytest.mark.slow
def test_a_detector_trains_and_evaluates_with_bf16_features(tmp_path, monkeypatch):
    """RetinaNet's NMS (mmcv's CPU op) takes fp32 only: the features come back
    to fp32 before the head, in training and in evaluation."""
    from mmbackbones.datasets import make_digits_detection
    monkeypatch.setenv(CPU_BF16_ENV, '1')
    det_root = str(tmp_path / 'det')
    make_digits_detection(det_root)
    options = [f"train_dataloader.dataset.data_root={det_root}/",
               f"val_dataloader.dataset.data_root={det_root}/",
               f"test_dataloader.dataset.data_root={det_root}/",
               f"val_evaluator.ann_file={det_root}/annotations/val.json",
               f"test_evaluator.ann_file={det_root}/annotations/val.json",
               'train_dataloader.dataset.indices=8', 'val_dataloader.dataset.indices=8',
               'model.backbone.init_cfg=None', 'train_cfg.max_epochs=1']
    result = run_tool(['tools/train.py', DETECTOR, '--work-dir', str(tmp_path / 'work'),
                       '--cfg-options', *options])
    log = result.stdout + result.stderr
    # before the fp32 features: RuntimeError in mmcv's nms, 'expected scalar type Float'
    assert 'bf16 autocast' in log and 'Epoch(val) [1][' in log, log[-3000:]


def test_the_detection_demo_config_uses_the_same_switch(monkeypatch):
    monkeypatch.setenv(CPU_BF16_ENV, '1')
    cfg = Config.fromfile(DETECTOR)
    assert choose_precision(cfg, cuda=False) is torch.bfloat16
    wrapper = build_optim_wrapper(nn.Linear(2, 2), cfg.optim_wrapper)
    assert type(wrapper) is OptimWrapper and wrapper.clip_grad_kwargs
    cfg = Config.fromfile(DETECTOR)
    assert choose_precision(cfg, cuda=True) is torch.float16
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'


def test_forced_bf16_on_a_cpu_without_it_says_so(monkeypatch, log_lines):
    """MMBACKBONES_CPU_BF16=1 where bf16 is emulated: the log warns instead of
    calling it native (an epoch then takes several times longer than fp32)."""
    from mmbackbones.engine import precision
    monkeypatch.setenv(CPU_BF16_ENV, '1')
    monkeypatch.setattr(precision, 'native_cpu_bf16', lambda: False)
    cfg = Config.fromfile(RECIPE)
    assert choose_precision(cfg, cuda=False) is torch.bfloat16
    said = [line for line in log_lines if 'bf16' in line]
    assert len(said) == 1 and 'WITHOUT native bf16' in said[0] and 'native bf16)' not in said[0]
