"""Ports equal torchvision's models level by level, and load torchvision's
state-dict files."""
import pytest
import torch
import torchvision.models as tvm

from mmbackbones import CheckpointError, build_backbone, list_variants, load_weights
from mmbackbones.models import TorchvisionPort
from mmbackbones.models.layers import NORM_TYPES

PORTS = sorted(v for v, (cls, _) in list_variants().items()
               if issubclass(build_backbone.__globals__['MODELS'].get(cls), TorchvisionPort))


def torchvision_model(port):
    torch.manual_seed(0)
    model = getattr(tvm, port.tv_arch.builder)(weights=None)
    # non-trivial statistics, so that a mis-mapped buffer would show
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def tap_outputs(tv_model, port, x):
    outs = {}
    hooks = [tv_model.get_submodule(tap[-1]).register_forward_hook(
        lambda m, i, o, level=level: outs.__setitem__(level, o))
        for level, tap in enumerate(port.tv_arch.taps)]
    with torch.no_grad():
        logits = tv_model(x)
    for hook in hooks:
        hook.remove()
    return [outs[i] for i in range(5)], logits


def test_every_listed_port_is_here():
    assert len(PORTS) == 20  # ResNet x5, ResNeXt x2, WRN x2, MNv2, MNv3 x2, EffNet x8


@pytest.mark.parametrize('name', PORTS)
def test_levels_equal_torchvision_intermediates(name, tmp_path):
    port = build_backbone(name, out_indices=(0, 1, 2, 3, 4)).eval()
    tv_model = torchvision_model(port)
    path = tmp_path / 'tv.pth'
    torch.save(tv_model.state_dict(), path)  # the format torchvision's weights use
    report = load_weights(port, str(path))
    assert report.loaded == len(port.state_dict())
    assert report.set_aside and all(k.split('.')[0] in port.torchvision_head
                                    for k in report.set_aside)
    x = torch.randn(1, 3, 57, 71)
    expected, _ = tap_outputs(tv_model, port, x)
    with torch.no_grad():
        got = port(x)
    for level, (a, b) in enumerate(zip(got, expected)):
        assert a.shape[1] == port.level_channels[level]
        assert a.shape[-1] == -(-71 // 2 ** (level + 1))
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f'level {level}')


@pytest.mark.parametrize('name', ['ResNet-18', 'MobileNetV3-small', 'EfficientNet-B0'])
def test_init_cfg_pretrained_reproduces_classification_features(name, tmp_path):
    probe = build_backbone(name)
    tv_model = torchvision_model(probe)
    path = tmp_path / 'tv.pth'
    torch.save(tv_model.state_dict(), path)
    port = build_backbone(name, out_indices=(-1, ),
                          init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    port.init_weights()
    port.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = port(x)[0]
        head = tv_model.fc if hasattr(tv_model, 'fc') else tv_model.classifier
        logits = head(torch.flatten(tv_model.avgpool(features), 1)) \
            if hasattr(tv_model, 'avgpool') else None
    expected, expected_logits = tap_outputs(tv_model, port, x)
    assert torch.equal(features, expected[-1])  # bit for bit
    if logits is not None:
        assert torch.equal(logits, expected_logits)
    # the same file through plain PyTorch
    plain = build_backbone(name).eval()
    plain.load_state_dict(torch.load(path, weights_only=True), strict=False)
    for key, value in port.state_dict().items():
        assert torch.equal(plain.state_dict()[key], value), key


def test_state_dict_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / 'resnext50.pth'
    torch.save(tvm.resnext50_32x4d(weights=None).state_dict(), path)
    port = build_backbone('ResNet-50', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError, match=r'(?s)does not fit ResNet.*size mismatch for stage2.1.conv1.weight.*more'):
        port.init_weights()
    path = tmp_path / 'resnet34.pth'  # a known public layout: says which network to build
    torch.save(tvm.resnet34(weights=None).state_dict(), path)
    with pytest.raises(CheckpointError, match=r'torchvision:resnet34 layout\) holds a ResNet with depth=34; '
                                              r'this model has depth=50'):
        load_weights(build_backbone('ResNet-50'), str(path))
    path = tmp_path / 'mobilenet.pth'
    torch.save(tvm.mobilenet_v2(weights=None).state_dict(), path)
    with pytest.raises(CheckpointError, match=r'(?s)tensors of the model are missing.*stem'):
        load_weights(build_backbone('ResNet-18'), str(path))


def test_norm_cfg_replaces_torchvision_batchnorms():
    from torchvision.ops.misc import FrozenBatchNorm2d
    port = build_backbone('ResNet-18', norm_cfg=dict(type='FrozenBN'))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in port.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in port.modules()) == 20
    with pytest.raises(ValueError, match='keeps torchvision'):
        build_backbone('ResNet-18', act_cfg=dict(type='SiLU'))
    with pytest.raises(ValueError, match=r"unknown EfficientNet arch 'b9'; valid: \['b0'"):
        build_backbone('EfficientNet', arch='b9')


@pytest.mark.parametrize('name', ['MobileNetV3-large', 'MobileNetV3-small', 'EfficientNet-B5'])
@pytest.mark.parametrize('norm', ['FrozenBN', 'SyncBN', 'BN'])
def test_replaced_norms_keep_torchvision_eps_and_momentum(name, norm):
    """MobileNetV3 (eps 1e-3, momentum 0.01) and EfficientNet-B5+ (eps 1e-3) differ
    from the defaults: a replaced norm must compute torchvision's features."""
    port = build_backbone(name, norm_cfg=dict(type=norm))
    tv_model = torchvision_model(port)
    tv_norms = [m for m in tv_model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {m.eps for m in tv_norms} == {1e-3}
    ours = [m for m in port.modules() if isinstance(m, NORM_TYPES)]
    assert [m.eps for m in ours] == [m.eps for m in tv_norms[:len(ours)]]
    if norm != 'FrozenBN':
        assert [m.momentum for m in ours] == [m.momentum for m in tv_norms[:len(ours)]]
    load_weights(port, tv_model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    expected, _ = tap_outputs(tv_model, port, x)
    with torch.no_grad():
        for got, want in zip(port.eval()(x), expected[1:]):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_explicit_norm_cfg_eps_wins():
    port = build_backbone('MobileNetV3-small', norm_cfg=dict(type='BN', eps=1e-5))
    assert {m.eps for m in port.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-5}


def test_caffe_style_resnet_files_are_refused(tmp_path, monkeypatch):
    """Caffe-style ResNets (OpenMMLab's detectron/detectron2 files) have
    torchvision's keys and shapes but the stride on the 1x1 conv: decided from
    what the source names, never loaded as torchvision's network."""
    data = tvm.resnet50(weights=None).state_dict()
    caffe = tmp_path / 'resnet50_msra-5891d200.pth'  # open-mmlab://detectron2/resnet50_caffe
    torch.save(data, caffe)
    with pytest.raises(CheckpointError, match=r"caffe-style ResNet.*stride sits on the first 1x1 "
                                              r"conv.*style='caffe'.*layout='pytorch'"):
        load_weights(build_backbone('ResNet-50'), str(caffe))
    with pytest.raises(CheckpointError, match=r"caffe-style ResNet \(layout='caffe' was given"):
        load_weights(build_backbone('ResNet-50'), data, layout='caffe')
    load_weights(build_backbone('ResNet-50'), str(caffe), layout='pytorch')  # the user says so
    plain = tmp_path / 'resnet50-0676ba61.pth'  # torchvision's name: pytorch-style
    torch.save(data, plain)
    load_weights(build_backbone('ResNet-50'), str(plain))
    # through MMEngine's name, pointed at the stand-in by $MMENGINE_HOME/open_mmlab.json
    # (in the cache it would be refused: it is not the file with the published hash)
    monkeypatch.setenv('MMENGINE_HOME', str(tmp_path))
    (tmp_path / 'open_mmlab.json').write_text(f'{{"detectron2/resnet50_caffe": "{caffe.name}"}}')
    with pytest.raises(CheckpointError, match=r"open-mmlab://detectron2/resnet50_caffe is a "
                                              r"caffe-style ResNet"):
        load_weights(build_backbone('ResNet-50'), 'open-mmlab://detectron2/resnet50_caffe')
