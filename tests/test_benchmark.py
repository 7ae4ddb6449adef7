"""The speed tools run end to end on tiny inputs and report what they measured
(the speeds themselves are measured by the tools, not asserted here)."""
import os.path as osp
import sys

import pytest
import torch

from mmbackbones.benchmark import Setting, compare
from mmbackbones.models.layers import NORM_TYPES
from training_utils import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools'))
import benchmark as benchmark_tool  # noqa: E402
import benchmark_pipeline  # noqa: E402

TINY = ['--batch', '2', '--shape', '64', '--repeats', '2', '--iters', '1', '--warmup', '1']


def test_against_the_torchvision_reference_in_both_modes():
    rows = benchmark_tool.main(['ResNet-18', *TINY])
    assert [(mode, model) for mode, model, *_ in rows] == [
        ('infer', 'ours (eager)'), ('infer', 'reference (eager)'),
        ('train', 'ours (eager)'), ('train', 'reference (eager)')]
    infer_ratio, train_ratio = float(rows[0][-1]), float(rows[2][-1])
    assert infer_ratio > 0 and train_ratio > 0
    assert float(rows[2][5]) > 0  # activation memory of the training step


def test_deployed_against_eager():
    rows = benchmark_tool.main(['VoVNet-19-slim', *TINY, '--mode', 'infer', '--fuse',
                                '--channels-last', '--against', 'eager'])
    assert [model for _, model, *_ in rows] == ['ours (fused, channels-last)', 'ours (eager)']


def test_fused_against_unfused_skips_training():
    rows = benchmark_tool.main(['Darknet-19', *TINY, '--fuse', '--against', 'unfused'])
    assert [(mode, model) for mode, model, *_ in rows] == [
        ('infer', 'ours (fused)'), ('infer', 'ours (unfused)')]


@pytest.mark.parametrize('argv, message', [
    (['VoVNet-39', '--against', 'unfused'], 'add --fuse'),
    (['VoVNet-39', '--against', 'eager'], 'needs a faster path'),
])
def test_comparisons_without_a_difference_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        benchmark_tool.main(argv)
    assert message in capsys.readouterr().err


def test_a_backbone_without_a_reference_is_timed_alone_by_default(capsys):
    """`benchmark.py VoVNet-39` with its defaults printed an empty table header,
    then 'no identical reference', and exited 1."""
    rows = benchmark_tool.main(['VoVNet-19-slim', *TINY])
    assert [(mode, model) for mode, model, *_ in rows] == [('infer', 'ours (eager)'),
                                                            ('train', 'ours (eager)')]
    assert 'no identical timm/torchvision network for VoVNet-19-slim' in capsys.readouterr().out
    with pytest.raises(ValueError, match='no identical reference for VoVNet-19-slim'):
        benchmark_tool.main(['VoVNet-19-slim', *TINY, '--against', 'reference'])
    assert '| mode |' not in capsys.readouterr().out  # refused before any table


def test_runs_that_cannot_compare_are_refused():
    model = torch.nn.Conv2d(3, 8, 3)
    with pytest.raises(ValueError, match='must share mode, batch'):
        compare({'a': (model, Setting(batch=1)), 'b': (model, Setting(batch=2))})


def test_the_benchmark_leaves_training_norms_in_train_mode():
    """Training-step runs time the model in train mode (BN updating statistics)."""
    from mmbackbones import build_backbone
    model = build_backbone('Darknet-19')
    compare({'ours': (model, Setting(mode='train', batch=2, shape=(32, 32)))},
            repeats=1, iters=1, warmup=1)
    norms = [m for m in model.modules() if isinstance(m, NORM_TYPES)]
    assert norms and all(m.training for m in norms)
    assert int(norms[0].num_batches_tracked) == 3  # warm-up, memory probe, timed step


def test_pipeline_benchmark_runs_every_pipeline(capsys):
    ratio = benchmark_pipeline.main(['--images', '2', '--repeats', '1', '--batch', '4',
                                     '--loader-batches', '1', '--loader-rounds', '1'])
    assert ratio > 0
    out = capsys.readouterr().out
    for side in ('mmbackbones fast (default)', 'mmbackbones exact', 'torchvision reference'):
        assert side in out
    for stage in benchmark_pipeline.STAGES:
        assert f'| {stage} |' in out
    assert 'ratio per worker (images/s, fast / torchvision)' in out
    assert '| 1 |' in out  # the DataLoader with one worker
