"""Inference fusion and deployment, in-place residual adds, channels-last, bf16
autocast, torch.compile and ONNX export (small inputs), once per code path: the
variants that differ only in depth or width (ResNet-50/101/152, EfficientNet-B0..B7,
VoVNet-39/57/99) run the same Python with more repeats of the same modules, so
they fuse, trace and export alike. Inductor compiles of every variant are marked
``compile_all`` (``make test-compile``); Darknet-19 (and VoVNet-19-slim through
deploy()) is compiled with Inductor in the default suite."""
import warnings

import pytest
import torch

from mmbackbones import build_backbone, list_variants
from mmbackbones.deploy import FuseWarning, deploy, foldable, fuse
from training_utils import CODE_PATHS, random_bn_statistics

VARIANTS = sorted(list_variants())
#: the smallest variant of each distinct code path: block type (basic, bottleneck,
#: grouped, wide, inverted residual with and without SE), activation, VoVNet's
#: V1/V2/eSE-last and stride-4 stem
# VoVNet's Inductor compile is test_deploy_compiled_with_frozen_weights
# Inductor compiles in the default suite: Darknet-19 with a training step (VoVNet: the
# deploy() tests). A fresh clone's cache is cold and each compile takes 20-45 s there, so
# every other variant is compiled by `make test-compile`.
DEFAULT_COMPILES = ['Darknet-19']


def with_statistics(name, **kwargs):
    """A backbone in eval mode with non-trivial norm statistics and affine terms."""
    torch.manual_seed(0)
    return random_bn_statistics(build_backbone(name, out_indices=(0, 1, 2, 3, 4), **kwargs))


def assert_close_relative(got, expected, rel):
    for level, (a, b) in enumerate(zip(got, expected)):
        scale = b.abs().max().item()
        err = (a.float() - b.float()).abs().max().item()
        assert err <= rel * scale, f'level {level}: max error {err:.3g} > {rel} x {scale:.3g}'


@pytest.mark.parametrize('name', CODE_PATHS)
def test_fused_equals_unfused(name):
    model = with_statistics(name)
    fused = fuse(model)
    assert not any(foldable(m) for m in fused.modules())
    assert any(foldable(m) for m in model.modules())  # a copy
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert_close_relative(fused(x), model(x), rel=1e-5)


@pytest.mark.parametrize('order', [('conv', 'norm', 'act'), ('norm', 'conv', 'act'),
                                   ('conv', 'act', 'norm')])
def test_fuse_follows_mmcv_conv_module_order(order):
    """Detector necks and heads are built from mmcv's ConvModule (``conv``/``bn``
    attributes): a norm before the conv must not be folded into it."""
    from mmcv.cnn import ConvModule
    torch.manual_seed(0)
    block = ConvModule(8, 8, 3, padding=1, norm_cfg=dict(type='BN'), order=order).eval()
    block.bn.running_mean.uniform_(-0.5, 0.5)
    block.bn.running_var.uniform_(0.5, 2.0)
    fused = fuse(block)
    folded = not any(foldable(m) for m in fused.modules())
    assert folded == (order.index('norm') == order.index('conv') + 1)
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        assert_close_relative([fused(x)], [block(x)], rel=1e-5)


def test_fuse_folds_frozen_bn_too():
    model = with_statistics('Darknet-19', norm_cfg=dict(type='FrozenBN'))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_close_relative(fuse(model)(x), model(x), rel=1e-5)


@pytest.mark.parametrize('name', CODE_PATHS)
def test_deployed_equals_eager(name):
    """deploy(): BN folded, frozen, channels-last weights; NCHW input accepted."""
    model = with_statistics(name)
    deployed = deploy(model)
    assert not any(p.requires_grad for p in deployed.parameters())
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in deployed.parameters() if p.dim() == 4)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert_close_relative(deployed(x), model(x), rel=1e-4)


@pytest.mark.parametrize('name', ['Darknet-53', 'CSPDarknet-19', 'VoVNet-19'])
def test_residual_adds_in_place_only_without_autograd(name):
    """Without autograd the residual add reuses the block's output; the values
    equal the out-of-place add, and training still back-propagates."""
    model = with_statistics(name)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        in_place = model(x)
    out_of_place = model(x)  # autograd on
    for a, b in zip(in_place, out_of_place):
        assert torch.equal(a, b.detach())
    model.train()
    sum(o.mean() for o in model(x)).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize('name', ['VoVNet-19-slim'])
def test_deploy_compiled_with_frozen_weights(name):
    torch._dynamo.reset()
    model = with_statistics(name)
    compiled = deploy(model, compile=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        assert_close_relative(compiled(x), expected, rel=1e-4)
        # frozen: the weights were baked into the compiled graph at the first call
        next(compiled.parameters()).mul_(2)
        assert_close_relative(compiled(x), expected, rel=1e-4)
        assert not torch.allclose(compiled.module(x)[-1], expected[-1])
    assert not torch._inductor.config.freezing  # the global flag is left as it was


@pytest.mark.parametrize('name', CODE_PATHS)
def test_channels_last_and_bf16(name):
    model = with_statistics(name)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        last = model.to(memory_format=torch.channels_last)
        got = last(x.contiguous(memory_format=torch.channels_last))
        assert_close_relative(got, expected, rel=1e-4)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            half = model(x)
    assert all(h.dtype == torch.bfloat16 for h in half)
    assert_close_relative(half, expected, rel=0.1)


@pytest.mark.slow  # a dynamo capture of every code path
@pytest.mark.parametrize('name', CODE_PATHS)
def test_dynamo_captures_one_graph(name):
    """fullgraph=True: any graph break is an error (tracing only, no codegen)."""
    torch._dynamo.reset()
    model = with_statistics(name)
    compiled = torch.compile(model, fullgraph=True, backend='eager')
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_close_relative(compiled(x), model(x), rel=1e-6)


def compile_and_check(name, train: bool):
    torch._dynamo.reset()
    model = with_statistics(name)
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_close_relative(compiled(x), model(x), rel=1e-4)
    if train:
        model.train()
        out = compiled(x)
        sum(o.float().mean() for o in out).backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.slow
@pytest.mark.parametrize('name', DEFAULT_COMPILES)
def test_inductor_compile(name):
    compile_and_check(name, train=name == 'Darknet-19')


@pytest.mark.compile_all
@pytest.mark.parametrize('name', sorted(set(VARIANTS) - set(DEFAULT_COMPILES)))
def test_inductor_compile_every_variant(name):
    compile_and_check(name, train=False)


# torch's default exporter with dynamic shapes takes 4-13 s a network (symbolic
# shapes; static: 1-3 s): it exports one network per family dynamically, every other
# code path statically; the TorchScript-based exporter exports all dynamically.
# (MobileNetV3's hardswish takes 20 s dynamically: static here, dynamic in TorchScript)
DYNAMIC_DEFAULT_EXPORT = ['VoVNet-19-slim', 'ResNet-50', 'Darknet-19', 'CSPDarknet-19',
                          'EfficientNet-B0']
EXPORT_CASES = [pytest.param(name, exporter, id=f'{name}-{exporter}',
                             marks=[pytest.mark.slow] if exporter == 'dynamo' and name not in (
                                 'VoVNet-19-slim', 'ResNet-50') else [])
                for name in CODE_PATHS
                for exporter in ('dynamo' if name in DYNAMIC_DEFAULT_EXPORT else 'dynamo-static',
                                 'torchscript')]


@pytest.mark.slow  # 31 exports, each run in two runtimes
@pytest.mark.parametrize('name,exporter', EXPORT_CASES)
def test_onnx_export_matches_pytorch_in_onnxruntime_and_openvino(name, exporter, tmp_path):
    """torch's default exporter (dynamo, as a user calls it) and the TorchScript
    one, dynamic batch and size (or static); ONNX Runtime and OpenVINO against
    PyTorch."""
    from mmbackbones.export import export_onnx, run_onnxruntime, run_openvino
    model = with_statistics(name)
    dynamo, dynamic = exporter != 'torchscript', exporter != 'dynamo-static'
    path = export_onnx(model, str(tmp_path / 'model.onnx'), shape=(1, 3, 64, 96),
                       dynamo=dynamo, dynamic=dynamic)
    # another shape where the axes are dynamic
    y = torch.randn(2, 3, 96, 64) if dynamic else torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = fuse(model).eval()(y)
    runtimes = [run_onnxruntime] + ([run_openvino] if dynamo else [])
    for run in runtimes:
        got = run(path, y.numpy())
        assert_close_relative([torch.from_numpy(g) for g in got], expected, rel=1e-4)


@pytest.mark.parametrize('norm', ['SyncBN', 'reverted SyncBN'])
def test_fuse_folds_every_batchnorm_variant(norm):
    """SyncBN, and MMEngine's _BatchNormXd that revert_sync_batchnorm gives."""
    from mmengine.model import revert_sync_batchnorm
    model = with_statistics('VoVNet-19-slim', norm_cfg=dict(type='SyncBN'))
    if norm == 'reverted SyncBN':
        model = revert_sync_batchnorm(model)
        assert type(model.stem[0].norm).__name__ == '_BatchNormXd'
    with warnings.catch_warnings():
        warnings.simplefilter('error', FuseWarning)
        fused = fuse(model)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                   for m in fused.modules())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_close_relative(fused(x), model.eval()(x), rel=1e-5)


def test_fuse_reports_pairs_it_cannot_fold():
    model = build_backbone('Darknet-19', norm_cfg=dict(type='GN', num_groups=8))
    with pytest.warns(FuseWarning, match=r'fuse\(\): 18 conv -> norm pairs cannot be '
                                         r'folded.*stem\.0\.norm \(GroupNorm\)'):
        fused = fuse(model)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert_close_relative(fused(x), model.eval()(x), rel=1e-6)
    no_stats = build_backbone('Darknet-19')
    for m in no_stats.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.track_running_stats, m.running_mean, m.running_var = False, None, None
    with pytest.warns(FuseWarning, match=r'BatchNorm2d'):
        fuse(no_stats)


def test_fuse_folds_a_batchnorm_without_affine_terms():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4, affine=False))
    model = random_bn_statistics(model)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert_close_relative([fuse(model)(x)], [model(x)], rel=1e-5)


@pytest.mark.parametrize('model_name', ['resnet18d'] + [
    pytest.param(name, marks=pytest.mark.slow) for name in ('convnext_atto', 'efficientnet_b0')])
def test_timm_backbones_export_and_run_in_both_runtimes(model_name, tmp_path):
    pytest.importorskip('timm')
    from mmbackbones import Timm
    from mmbackbones.export import export_onnx, run_onnxruntime, run_openvino
    model = random_bn_statistics(Timm(model_name)).eval()
    path = export_onnx(model, str(tmp_path / 'timm.onnx'), shape=(1, 3, 64, 64))
    y = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        expected = fuse(model).eval()(y)
    for run in (run_onnxruntime, run_openvino):
        assert_close_relative([torch.from_numpy(g) for g in run(path, y.numpy())], expected,
                              rel=1e-4)


def test_export_refuses_bad_input_and_leaves_no_partial_file(tmp_path, monkeypatch):
    import sys
    from mmbackbones.export import export_onnx
    model = build_backbone('VoVNet-19-slim')
    path = tmp_path / 'model.onnx'
    with pytest.raises(ValueError, match=r'multiples of 32.*\(1, 3, 224, 256\), or '
                                         r'dynamic=False'):
        export_onnx(model, str(path), shape=(1, 3, 200, 250))
    monkeypatch.setitem(sys.modules, 'onnxscript', None)  # as where it is not installed
    with pytest.raises(ImportError, match=r'needs onnxscript: pip install "mmbackbones\[onnx\]"'):
        export_onnx(model, str(path), shape=(1, 3, 64, 64))
    monkeypatch.undo()

    def fails_half_way(model, args, f, **kwargs):
        open(f, 'wb').write(b'partial')
        raise RuntimeError('unsupported operator')
    monkeypatch.setattr(torch.onnx, 'export', fails_half_way)
    with pytest.raises(RuntimeError, match='unsupported operator'):
        export_onnx(model, str(path), shape=(1, 3, 64, 64))
    assert list(tmp_path.iterdir()) == []  # nothing under the final name, no leftover


def test_runtime_session_names_what_it_takes(tmp_path):
    from mmbackbones.export import Session, export_onnx
    path = export_onnx(build_backbone('VoVNet-19-slim'), str(tmp_path / 'model.onnx'),
                       shape=(1, 3, 64, 64), dynamo=False)
    x = torch.randn(1, 3, 64, 64).numpy()
    session = Session(path)
    assert session.input_names == ['image'] and len(session(x)) == 4
    with pytest.raises(ValueError, match=r'takes 1 inputs \(image\), got 2'):
        session([x, x])
    with pytest.raises(ValueError, match=r"inputs \['image'\] missing"):
        session({'input': x})
    with pytest.raises(FileNotFoundError, match=r'no such exported model'):
        Session(str(tmp_path / 'none.onnx'))
    with pytest.raises(ValueError, match=r'choose one of onnxruntime, openvino'):
        Session(path, 'tensorrt')
    with pytest.raises(ValueError, match=r"precision='bf16' with onnxruntime"):
        Session(path, precision='bf16')


class NormThenConv(torch.nn.Module):
    """timm DPN's BnActConv2d: its ``bn`` runs before its ``conv``."""

    def __init__(self, in_channels=8, out_channels=8):
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(in_channels)
        self.act = torch.nn.ReLU()
        self.conv = torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x):
        return self.conv(self.act(self.bn(x)))


class ConvOutputTwice(torch.nn.Module):
    """conv1 -> bn1, but the conv's output is also added after: not foldable."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)

    def forward(self, x):
        y = self.conv1(x)
        return self.bn1(y) + y


class Untraceable(torch.nn.Module):
    """conv1 -> bn1 with control flow on values: torch.fx cannot check the order."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)

    def forward(self, x):
        return self.bn1(self.conv1(x)) if x.sum() > 0 else self.conv1(x)


@pytest.mark.parametrize('in_channels,out_channels', [(8, 8), (8, 16)])
def test_fuse_leaves_a_norm_that_runs_before_its_conv(in_channels, out_channels):
    """``bn``/``conv`` names paired a norm with the conv that reads it: the
    output was off by up to 1.64, or folding crashed where the widths differ."""
    block = random_bn_statistics(NormThenConv(in_channels, out_channels))
    with warnings.catch_warnings():
        warnings.simplefilter('error', FuseWarning)  # no pair: nothing to report
        fused = fuse(block)
    assert isinstance(fused.bn, torch.nn.BatchNorm2d)
    x = torch.randn(2, in_channels, 8, 8)
    with torch.no_grad():
        assert_close_relative([fused(x)], [block(x)], rel=1e-6)


@pytest.mark.parametrize('block', [ConvOutputTwice, Untraceable])
def test_fuse_warns_on_pairs_it_cannot_verify(block):
    block = random_bn_statistics(block())
    with pytest.warns(FuseWarning, match=r'1 conv/norm pairs stay unfolded.*order could not '
                                         r'be verified.*conv1 -> bn1'):
        fused = fuse(block)
    assert isinstance(fused.bn1, torch.nn.BatchNorm2d)
    x = torch.randn(2, 8, 8, 8).abs()
    with torch.no_grad():
        assert_close_relative([fused(x)], [block(x)], rel=1e-6)


def test_deploy_keeps_timm_dpn_eager_numerics():
    """timm's DPN (BN, ReLU, then conv in every block) through deploy(): what
    folds (its stem) folds; its pre-activation norms stay."""
    timm = pytest.importorskip('timm')
    from mmbackbones import Timm
    model = random_bn_statistics(Timm('dpn68', out_indices=(0, 1, 2, 3, 4)))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    norms = sum(isinstance(m, timm.layers.BatchNormAct2d) for m in model.modules())
    with warnings.catch_warnings():
        warnings.simplefilter('error', FuseWarning)
        deployed = deploy(model, channels_last=False, inplace=True)  # no copy: 2 s saved
    left = sum(isinstance(m, timm.layers.BatchNormAct2d) for m in deployed.modules())
    assert 0 < left < norms
    with torch.no_grad():
        assert_close_relative(deployed(x), expected, rel=1e-4)
