"""What the errors say (#24): each names the real cause and the fix."""
import pytest
import torch

from mmbackbones import CheckpointError, Timm, build_backbone, load_weights
from mmbackbones.checkpoint import safe_load


@pytest.mark.parametrize('content', [bytes(range(256)) * 4, b'import os\nos.system("ls")\n'],
                         ids=['random-bytes', 'python-file'])
def test_a_file_that_is_no_checkpoint_is_called_that(content, tmp_path):
    """Not 'needs a type outside the safe allow-list ... TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1
    loads it': advice to turn the safety off for a file that is not a checkpoint."""
    path = tmp_path / 'model.py'
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r'is not a checkpoint: torch.save writes a zip '
                                              r'archive or a pickle') as err:
        safe_load(path)
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in str(err.value)


@pytest.mark.parametrize('name, kwargs, reason', [
    ('ResNet', dict(depth=18), 'ResNet does not implement stochastic depth'),
    ('VoVNet', dict(depth=39, residual=False, ese=False), 'VoVNet with residual=False .V1. has no'),
    ('VoVNet', dict(depth=19), 'VoVNet-19 has one OSA module per stage'),
])
def test_drop_path_refusals_say_why(name, kwargs, reason):
    with pytest.raises(ValueError, match=rf'drop_path_rate=0.1: {reason}.*use 0 \(backbones '
                                         rf'with stochastic depth: Darknet'):
        build_backbone(name, drop_path_rate=0.1, **kwargs)


def test_a_wrong_file_for_timm_names_both_networks(tmp_path):
    """Not 'this model is Timm with depth=None'."""
    pytest.importorskip('timm')
    source = build_backbone('VoVNet-19-slim')
    path = tmp_path / 'vovnet.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in source.state_dict().items()},
                'meta': {'backbone': {'type': 'VoVNet', 'depth': 19, 'slim': True}}}, path)
    with pytest.raises(CheckpointError, match=r"holds a VoVNet\(depth=19, slim=True.*this model "
                                              r"is a Timm\(model_name='resnet18d'"):
        load_weights(Timm('resnet18d'), str(path), prefix='backbone.')


@pytest.mark.slow  # two subprocesses
def test_tools_print_the_error_without_a_traceback_unless_debugging(tmp_path):
    from training_utils import run_tool
    args = ['tools/test.py', str(tmp_path / 'missing_config.py'), str(tmp_path / 'x.pth')]
    plain = run_tool(args, check=False)
    assert plain.returncode == 1
    assert 'Traceback' not in plain.stderr
    assert 'test.py: error: ' in plain.stderr and 'missing_config.py' in plain.stderr
    assert '--debug or MMBACKBONES_DEBUG=1 shows the traceback' in plain.stderr
    debug = run_tool(args + ['--debug'], check=False)
    assert debug.returncode != 0 and 'Traceback' in debug.stderr


def test_the_documented_activations_are_the_accepted_ones():
    """docs/backbones.md said act_cfg takes 'any of mmcv's activations'; RReLU,
    HSigmoid and Clamp were refused. The page now lists what is accepted."""
    import re

    from mmbackbones.models.layers import ACTIVATIONS
    from training_utils import ROOT
    row = next(line for line in open(f'{ROOT}/docs/backbones.md')
               if line.startswith("| `act_cfg=dict(type='ReLU')`"))
    listed, refused = row.split('(mmcv')[0], row.split('(mmcv')[1]
    names = set(re.findall(r'`(\w+)`', listed.split('|', 2)[2]))
    assert names == set(ACTIVATIONS)
    for name in re.findall(r'`(\w+)`', refused.split(')')[0]):
        with pytest.raises(ValueError, match=rf"unknown activation type '{name}'"):
            build_backbone('VoVNet-19-slim', act_cfg=dict(type=name))


def test_a_tool_ends_by_destroying_its_process_group(monkeypatch):
    """A run under torchrun leaves a process group; left to the interpreter's exit,
    a 2-process run that validated at its end aborted there (exit -6)."""
    import torch.distributed as dist

    from mmbackbones.cli import run
    from training_utils import free_port
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(free_port()))
    dist.init_process_group('gloo', rank=0, world_size=1)
    with pytest.raises(SystemExit) as ended:
        run(lambda: 0)
    assert ended.value.code == 0 and not dist.is_initialized()
