"""Mixed precision on CPU and GPU from one config: the machine decides (bf16
autocast + channels-last on a CPU with native bf16, MMEngine's AMP on CUDA, fp32
otherwise), evaluation and deploy() follow, checkpoints stay fp32."""
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
from mmbackbones.engine.precision import (CPU_BF16_ENV, CPUAmpOptimWrapper,
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
    assert cfg.optim_wrapper.type == 'mmbackbones.CPUAmpOptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper  # bf16 needs no loss scaling
    assert cfg.val_cfg.fp16 and cfg.test_cfg.fp16  # evaluation under the same autocast
    hooks = [h['type'] for h in cfg.custom_hooks]
    assert hooks.count('mmbackbones.ChannelsLastHook') == 1
    assert 'mmbackbones.EpochSeedHook' in hooks
    choose_precision(cfg, cuda=False)  # idempotent: no second hook
    assert [h['type'] for h in cfg.custom_hooks] == hooks
    assert any('bf16 autocast' in line for line in log_lines)
    wrapper = build_optim_wrapper(nn.Linear(2, 2), cfg.optim_wrapper)
    assert type(wrapper) is CPUAmpOptimWrapper


def test_a_cpu_without_bf16_falls_back_to_fp32_with_one_log_line(monkeypatch, log_lines):
    monkeypatch.setenv(CPU_BF16_ENV, '0')
    cfg = Config.fromfile(RECIPE)
    assert choose_precision(cfg, cuda=False) is None
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    assert not cfg.val_cfg.get('fp16') and not cfg.custom_hooks[1:]
    said = [line for line in log_lines if 'fp32' in line]
    assert len(said) == 1 and 'no native bf16' in said[0], log_lines
    assert type(build_optim_wrapper(nn.Linear(2, 2), cfg.optim_wrapper)) is OptimWrapper


def test_cuda_keeps_mmengine_amp_and_its_dtype():
    cfg = Config.fromfile(RECIPE)
    assert choose_precision(cfg, cuda=True) is torch.float16
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    cfg = Config.fromfile(RECIPE)
    cfg.optim_wrapper.dtype = 'bfloat16'
    assert choose_precision(cfg, cuda=True) is torch.bfloat16


def test_cpu_amp_wrapper_autocasts_the_forward_and_keeps_fp32_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.LazyLinear(2))
    x = torch.randn(4, 3, 8, 8)
    model(x)
    wrapper = CPUAmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        out = model(x)
    assert out.dtype is torch.bfloat16
    before = [p.detach().clone() for p in model.parameters()]
    wrapper.update_params(out.float().square().mean())
    assert all(p.dtype is torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # a GPU run's optimizer state (with its loss scaler) resumes here
    state = wrapper.state_dict()
    wrapper.load_state_dict(dict(state, loss_scaler={'scale': 65536.0}))
    assert wrapper.state_dict()['param_groups'] == state['param_groups']


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
    assert type(runner.optim_wrapper) is CPUAmpOptimWrapper
    modes = {(training, dtype, cl_weights, cl_input)
             for training, dtype, cl_weights, cl_input in probe.seen}
    assert modes == {(True, torch.bfloat16, True, True),
                     (False, torch.bfloat16, True, True)}, modes
    state = safe_load(str(work / 'epoch_2.pth'))['state_dict']
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float32}

    bf16 = test_tool.main([path, str(work / 'epoch_2.pth'), '--work-dir', str(work)])
    fp32 = test_tool.main([path, str(work / 'epoch_2.pth'), '--work-dir', str(work),
                           '--fp32'])
    # 64 validation images: one image is 1.6 %; bf16 may flip a borderline one
    assert abs(bf16['accuracy/top1'] - fp32['accuracy/top1']) <= 2 * 100 / 64


@pytest.mark.slow
@pytest.mark.parametrize('first, then', [([], ['--fp32']), (['--fp32'], [])],
                         ids=['bf16-then-fp32', 'fp32-then-bf16'])
def test_resume_across_precisions(digits_root, tmp_path, first, then):
    path = write_small_config(tmp_path, digits_root, images=64, epochs=2)
    env, work = {CPU_BF16_ENV: '1'}, str(tmp_path / 'work')
    run_tool(['tools/train.py', path, '--work-dir', work,
              '--cfg-options', 'train_cfg.max_epochs=1', *first], env=env)
    result = run_tool(['tools/train.py', path, '--work-dir', work, '--resume', *then],
                      env=env)
    log = result.stdout + result.stderr
    assert 'resumed epoch: 1,' in log
    state = safe_load(osp.join(work, 'epoch_2.pth'))
    assert {t.dtype for t in state['state_dict'].values() if t.is_floating_point()} == {
        torch.float32}
    assert ('bf16 autocast' in log) == (then == []), log[-2000:]


def test_the_detection_demo_config_uses_the_same_switch(monkeypatch):
    monkeypatch.setenv(CPU_BF16_ENV, '1')
    cfg = Config.fromfile(DETECTOR)
    assert choose_precision(cfg, cuda=False) is torch.bfloat16
    wrapper = build_optim_wrapper(nn.Linear(2, 2), cfg.optim_wrapper)
    assert type(wrapper) is CPUAmpOptimWrapper and wrapper.clip_grad_kwargs
    cfg = Config.fromfile(DETECTOR)
    assert choose_precision(cfg, cuda=True) is torch.float16
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
