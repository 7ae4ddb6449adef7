"""Checkpoint safety and clear errors on every loading path, and publishing."""
import hashlib
import os
import os.path as osp
import sys

import pytest
import torch

from mmbackbones import CheckpointError, build_backbone, load_weights
from mmbackbones.checkpoint import safe_load
from mmbackbones.publish import publish_checkpoint
from training_utils import ROOT, run_tool, write_small_config

sys.path.insert(0, osp.join(ROOT, 'tools'))
import publish_model as publish_tool  # noqa: E402
import test as test_tool  # noqa: E402
import train as train_tool  # noqa: E402


class RunsCode:
    """Unpickling this calls os.system: the classic malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


@pytest.fixture
def malicious(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    state = build_backbone('VoVNet-19-slim').state_dict()
    torch.save({'state_dict': state, 'meta': {'epoch': 1, 'iter': 1},
                'payload': RunsCode(marker)}, path)
    return str(path), marker


@pytest.fixture
def corrupt(tmp_path):
    path = tmp_path / 'corrupt.pth'
    path.write_bytes(b'PK\x03\x04 this is not a checkpoint' * 10)
    return str(path)


@pytest.fixture(scope='session')
def trained(digits_root, tmp_path_factory, worker_id):
    """A real (tiny) training run of the demo config: config, work dir, checkpoint;
    read only. Once per test session: pytest-xdist's workers share it through a
    file lock (a module fixture was set up on every worker that ran one of these
    tests, 2 x 15 s)."""
    from filelock import FileLock
    shared = tmp_path_factory.getbasetemp()
    if worker_id != 'master':  # each worker's base is a folder of the session's
        shared = shared.parent
    folder = shared / 'trained_checkpoint'
    work = folder / 'work'
    with FileLock(str(shared / 'trained_checkpoint.lock')):
        if not (work / 'epoch_2.pth').exists():
            folder.mkdir(exist_ok=True)
            write_small_config(folder, digits_root, images=64, batch=32, epochs=2,
                               validate=True)
            run_tool(['tools/train.py', str(folder / 'small_config.py'), '--work-dir',
                      str(work)])
    return str(folder / 'small_config.py'), str(work), str(work / 'epoch_2.pth')


@pytest.mark.slow  # trains or runs the tools in subprocesses
def test_every_loading_path_refuses_code(malicious, trained, tmp_path):
    path, marker = malicious
    config, _, _ = trained
    with pytest.raises(CheckpointError, match='refusing to load'):
        safe_load(path)
    with pytest.raises(CheckpointError, match='refusing to load'):
        load_weights(build_backbone('VoVNet-19-slim'), path)
    model = build_backbone('VoVNet-19-slim', init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointError, match='refusing to load'):
        model.init_weights()
    from mmengine.runner.checkpoint import _load_checkpoint  # resume/load_from use this
    with pytest.raises(CheckpointError, match='refusing to load'):
        _load_checkpoint(path)
    # the tools' own loading paths, in this process (their command lines run as
    # subprocesses in test_own_checkpoints_load_everywhere_without_env_vars)
    for main, argv in ((train_tool.main, [config, '--work-dir', str(tmp_path / 'w1'),
                                          '--resume', path]),
                       (train_tool.main, [config, '--work-dir', str(tmp_path / 'w2'),
                                          '--load-from', path]),
                       (test_tool.main, [config, path, '--work-dir', str(tmp_path / 'w3')]),
                       (publish_tool.main, [path, str(tmp_path / 'out.pth')])):
        with pytest.raises((CheckpointError, SystemExit), match='refusing to load'):
            main(argv)
    assert not marker.exists(), 'code in the checkpoint ran'


@pytest.mark.slow  # trains or runs the tools in subprocesses
def test_corrupt_checkpoint_is_a_clear_error(corrupt, trained, tmp_path):
    config, _, _ = trained
    with pytest.raises(CheckpointError, match='cannot read checkpoint'):
        load_weights(build_backbone('Darknet-19'), corrupt)
    result = run_tool(['tools/test.py', config, corrupt], check=False)
    assert result.returncode != 0 and 'cannot read checkpoint' in result.stderr
    with pytest.raises(FileNotFoundError, match='does not exist'):
        safe_load(str(tmp_path / 'nope.pth'))


@pytest.mark.slow  # trains or runs the tools in subprocesses
def test_own_checkpoints_load_everywhere_without_env_vars(trained, tmp_path):
    config, work, ckpt = trained
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ
    checkpoint = safe_load(ckpt)  # a Runner checkpoint: HistoryBuffer, numpy scalars
    assert {'state_dict', 'message_hub', 'optimizer', 'meta'} <= checkpoint.keys()
    # tools/test.py evaluates it; load_from initialises from it
    result = run_tool(['tools/test.py', config, ckpt, '--out', str(tmp_path / 'm.json'),
                       '--work-dir', str(tmp_path / 't')])
    import json
    metrics = json.loads((tmp_path / 'm.json').read_text())
    assert 'accuracy/top1' in metrics
    run_tool(['tools/train.py', config, '--work-dir', str(tmp_path / 'lf'), '--load-from',
              ckpt, '--cfg-options', 'train_cfg.max_epochs=1'])
    # init_cfg Pretrained with the classifier's prefix
    backbone = build_backbone('VoVNet-19-slim', init_cfg=dict(
        type='Pretrained', checkpoint=ckpt, prefix='backbone.'))
    backbone.init_weights()
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, checkpoint['state_dict']['backbone.' + key]), key
    assert result.returncode == 0


@pytest.mark.slow  # trains or runs the tools in subprocesses
def test_publish_keeps_weights_only_with_a_hash(trained, tmp_path):
    _, _, ckpt = trained
    out = publish_checkpoint(ckpt, str(tmp_path / 'vovnet_digits.pth'))
    digest = hashlib.sha256(open(out, 'rb').read()).hexdigest()
    assert osp.basename(out) == f'vovnet_digits-{digest[:8]}.pth'
    release = torch.load(out, weights_only=True)  # plain torch, no allow-list
    assert set(release) == {'state_dict', 'meta'}
    assert not release['meta']['ema'] and release['meta']['epoch'] == 2
    full = safe_load(ckpt)['state_dict']
    assert release['state_dict'].keys() == full.keys()
    assert osp.getsize(out) < osp.getsize(ckpt)
    # a release loads into the backbone through init_cfg with prefix
    backbone = build_backbone('VoVNet-19-slim', init_cfg=dict(
        type='Pretrained', checkpoint=out, prefix='backbone.'))
    backbone.init_weights()
    assert torch.equal(backbone.stem[0].conv.weight, full['backbone.stem.0.conv.weight'])


@pytest.mark.slow  # trains or runs the tools in subprocesses
def test_wrong_prefix_or_architecture_is_refused(trained):
    _, _, ckpt = trained
    with pytest.raises(CheckpointError, match=r"prefix 'body\.' matches none.*'backbone\.'"):
        load_weights(build_backbone('VoVNet-19-slim'), ckpt, prefix='body.')
    # the training checkpoint records its network: named before any key is compared
    with pytest.raises(CheckpointError, match=r'holds a VoVNet with slim=True; this model has '
                                              r'slim=False.*Set slim=True in the config'):
        load_weights(build_backbone('VoVNet-19'), ckpt, prefix='backbone.')
    with pytest.raises(CheckpointError, match=r"missing from it.*whole classifier or detector; "
                                              r"pass prefix='backbone\.'"):
        load_weights(build_backbone('VoVNet-19-slim'), ckpt)  # forgot the prefix


def test_bad_config_inputs_fail_early(digits_root, tmp_path):
    config = write_small_config(tmp_path, str(tmp_path / 'no_such_folder'))
    with pytest.raises(FileNotFoundError, match=r'dataset path\(s\) not found.*no_such_folder'):
        train_tool.main([config, '--work-dir', str(tmp_path / 'w')])
    typo = write_small_config(tmp_path, digits_root,
                              extra="model = dict(backbone=dict(type='VovNet'))\n")
    with pytest.raises(ValueError, match="unknown backbone type 'VovNet'.*did you mean "
                                        "'mmbackbones.VoVNet'"):
        train_tool.main([typo, '--work-dir', str(tmp_path / 'w')])


def test_checkpoints_record_their_network_and_releases_keep_it(trained, tmp_path):
    """A training checkpoint names its network (meta.backbone); the release keeps
    it; a load into a network that computes otherwise, with the same keys
    (VoVNet V2 without its residuals), is an error naming the argument."""
    _, _, ckpt = trained
    record = safe_load(ckpt)['meta']['backbone']
    assert record['type'] == 'VoVNet' and record['arch']['slim'] is True
    release = publish_checkpoint(ckpt, str(tmp_path / 'release.pth'))
    assert safe_load(release)['meta']['backbone'] == record
    load_weights(build_backbone('VoVNet-19-slim'), release, prefix='backbone.')
    same_keys = build_backbone('VoVNet-19-slim', residual=False)
    assert set(same_keys.state_dict()) == set(build_backbone('VoVNet-19-slim').state_dict())
    with pytest.raises(CheckpointError, match=r'holds a VoVNet with residual=True; this model '
                                              r'has residual=False.*Set residual=True'):
        load_weights(same_keys, release, prefix='backbone.')


def another_architecture(trained, tmp_path) -> str:
    """A Runner checkpoint of the same classifier with Darknet-19 as backbone."""
    state = safe_load(trained[2])['state_dict']
    other = {f'backbone.{k}': v for k, v in build_backbone('Darknet-19').state_dict().items()}
    other.update({k: v for k, v in state.items() if not k.startswith('backbone.')})
    path = tmp_path / 'darknet.pth'
    torch.save({'state_dict': other, 'meta': {'epoch': 1}}, path)
    return str(path)


def test_test_and_load_from_refuse_another_architecture(trained, tmp_path):
    """MMEngine's load_from is strict=False: size-mismatch warnings, then top-1
    0.0 % (or a whole training run) and exit 0. Here: an error, before any work."""
    config, _, _ = trained
    wrong = another_architecture(trained, tmp_path)
    with pytest.raises(CheckpointError, match=r'does not fit ImageClassifier.*backbone\.stem'):
        test_tool.main([config, wrong, '--work-dir', str(tmp_path / 'test')])
    with pytest.raises(CheckpointError, match=r'does not fit ImageClassifier'):
        train_tool.main([config, '--work-dir', str(tmp_path / 'train'), '--load-from', wrong])
    assert not any(name.endswith('.pth') for _, _, files in os.walk(tmp_path / 'train')
                   for name in files)


def vovnet_release(tmp_path, name: str, record: dict = None, **config) -> str:
    """A release of VoVNet-19-slim built with ``config``, recording its network
    as training does, or as ``record`` (a record an earlier version wrote)."""
    from mmbackbones.loader import network_record
    from mmbackbones.publish import write_release
    source = build_backbone('VoVNet-19-slim', **config)
    record = record or network_record(source, dict(type='VoVNet', depth=19, slim=True,
                                                   **config))
    return write_release({f'backbone.{k}': v for k, v in source.state_dict().items()},
                         dict(backbone=record), str(tmp_path / f'{name}.pth'))


GN8, GN16 = dict(type='GN', num_groups=8), dict(type='GN', num_groups=16)


@pytest.mark.parametrize('saved,loaded', [
    ({}, dict(norm_cfg=dict(type='BN', eps=1e-5))),  # the default, written out
    ({}, dict(norm_cfg=dict(type='SyncBN', momentum=0.03, requires_grad=True))),
    ({}, dict(act_cfg=dict(type='ReLU', inplace=False))),
    (dict(act_cfg=dict(type='LeakyReLU')),
     dict(act_cfg=dict(type='LeakyReLU', negative_slope=0.01, inplace=True))),
    (dict(act_cfg=dict(type='Swish')), dict(act_cfg=dict(type='SiLU'))),
    (dict(norm_cfg=GN8), dict(norm_cfg=dict(GN8, eps=1e-5))),
], ids=['bn-eps', 'syncbn-momentum', 'inplace', 'leaky-default', 'swish-silu', 'gn-eps'])
def test_one_network_written_two_ways_loads(saved, loaded, tmp_path):
    """Was: 'holds a VoVNet with ; ... Set  in the config' for the default eps."""
    release = vovnet_release(tmp_path, 'release', **saved)
    load_weights(build_backbone('VoVNet-19-slim', **loaded), release, prefix='backbone.')


@pytest.mark.parametrize('saved,loaded,message', [
    (dict(norm_cfg=GN16), dict(norm_cfg=GN8),
     r"holds a VoVNet with norm_cfg=\{'type': 'GN', 'num_groups': 16, 'eps': 1e-05\}; this "
     r"model has norm_cfg=\{'type': 'GN', 'num_groups': 8, 'eps': 1e-05\}"),
    ({}, dict(norm_cfg=GN8), r"norm_cfg=\{'type': 'BN', 'eps': 1e-05\}; this model has "
                             r"norm_cfg=\{'type': 'GN'"),
    ({}, dict(norm_cfg=dict(type='BN', eps=1e-3)),
     r"this model has norm_cfg=\{'type': 'BN', 'eps': 0.001\}"),
    (dict(act_cfg=dict(type='LeakyReLU', negative_slope=0.1)),
     dict(act_cfg=dict(type='LeakyReLU')),
     r"holds a VoVNet with act_cfg=\{'type': 'LeakyReLU', 'negative_slope': 0.1\}; this "
     r"model has act_cfg=\{'type': 'LeakyReLU', 'negative_slope': 0.01\}.*Set act_cfg="),
], ids=['gn-groups', 'bn-gn', 'bn-eps', 'leaky-slope'])
def test_another_norm_or_activation_setting_is_refused(saved, loaded, message, tmp_path):
    """Same keys and shapes, another function: a GN-16 release in a GN-8 VoVNet
    loaded, its features off by up to 0.72."""
    release = vovnet_release(tmp_path, 'release', **saved)
    with pytest.raises(CheckpointError, match=message):
        load_weights(build_backbone('VoVNet-19-slim', **loaded), release, prefix='backbone.')


def test_records_of_earlier_versions_load_into_the_same_network(tmp_path):
    """Files already written record ``norm_eps`` alone (and the config's
    arguments): they load into the network they came from, and a norm the
    record can tell apart is still refused."""
    arch = dict(depth=19, slim=True, residual=True, ese=True, stem_stride=2,
                act_cfg=dict(type='ReLU'), norm_eps=None)
    old = dict(type='VoVNet', depth=19, slim=True, arch=arch)
    release = vovnet_release(tmp_path, 'old', record=old)
    for same in ({}, dict(norm_cfg=dict(type='BN', eps=1e-5)),
                 dict(act_cfg=dict(type='ReLU', inplace=True))):
        load_weights(build_backbone('VoVNet-19-slim', **same), release, prefix='backbone.')
    eps = vovnet_release(tmp_path, 'eps', record=dict(old, arch=dict(arch, norm_eps=1e-3)))
    with pytest.raises(CheckpointError, match=r"holds a VoVNet with norm_cfg=\{'type': 'BN', "
                                              r"'eps': 0.001\}; this model has norm_cfg="):
        load_weights(build_backbone('VoVNet-19-slim'), eps, prefix='backbone.')
    gn = vovnet_release(tmp_path, 'gn', record=dict(old, norm_cfg=GN16), norm_cfg=GN16)
    load_weights(build_backbone('VoVNet-19-slim', norm_cfg=GN16), gn, prefix='backbone.')
    with pytest.raises(CheckpointError, match=r"'num_groups': 16.*this model has "
                                              r"norm_cfg=\{'type': 'GN', 'num_groups': 8"):
        load_weights(build_backbone('VoVNet-19-slim', norm_cfg=GN8), gn, prefix='backbone.')
