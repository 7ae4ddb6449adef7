"""The main job's headline: the pretrained backbone's detection gain, over several
seeds, must exceed the run-to-run spread; and how the demo shares the machine."""
import glob
import os.path as osp
import re
import sys

import pytest

from training_utils import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools'))
import demo  # noqa: E402


def test_the_verdict_needs_a_gain_beyond_the_spread():
    verdict = demo.spread_verdict([0.40, 0.42, 0.44], [0.20, 0.25, 0.30])
    assert verdict['gain'] == pytest.approx(0.17)
    assert verdict['spread'] == pytest.approx(0.05)  # the random runs' std
    assert verdict['holds']
    # a mean gain that one lucky random run matches does not hold
    assert not demo.spread_verdict([0.40, 0.42, 0.44], [0.20, 0.21, 0.41])['holds']
    # nor a gain smaller than the spread, even when the groups do not overlap
    assert not demo.spread_verdict([0.30, 0.30, 1.00], [0.00, 0.29])['holds']
    with pytest.raises(ValueError, match='at least 2 runs'):
        demo.spread_verdict([0.4], [0.2, 0.3])


@pytest.mark.parametrize('argv, message', [
    (['--seeds', '1'], '--seeds 1: the spread needs at least 2 runs'),
    (['--jobs', '0'], '--jobs 0: at least 1'),
    (['--pretrain-epochs', '1'], '--pretrain-epochs 1: at least 2 (a 1-epoch warmup, then the '
                                 'cosine decay)'),
    (['--detect-epochs', '0'], '--detect-epochs 0: at least 1'),
])
def test_the_demo_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        demo.main(argv)
    assert message in capsys.readouterr().err


def test_the_minimum_pretraining_follows_the_configs_warmup():
    from mmengine.config import Config
    warmup = Config.fromfile(demo.CLS_CONFIG).param_scheduler[0]
    assert warmup.type == 'LinearLR' and warmup.end == demo.PRETRAIN_WARMUP_EPOCHS


def test_detector_runs_share_the_cores():
    assert demo.parallelism(6, cores=2) == (2, 1)      # one single-threaded run per core
    assert demo.parallelism(6, cores=16) == (6, 2)     # never more processes than runs
    assert demo.parallelism(6, cores=1) == (1, 1)
    assert demo.parallelism(4, jobs=1, cores=2) == (1, 2)  # --jobs 1: one run, every core


def test_progress_is_read_from_each_run_log(tmp_path):
    assert demo.job_progress(str(tmp_path), epochs=8) is None  # not started
    for partial in ('', '[demo-job] star'):  # opened, first line not yet written
        (tmp_path / demo.JOB_LOG).write_text(partial)
        assert demo.job_progress(str(tmp_path), epochs=8) is None
    (tmp_path / demo.JOB_LOG).write_text(
        '[demo-job] started 1000.0\n'
        '12/02 14:35:58 - mmengine - INFO - Epoch(train) [1][10/40]  lr: 1e-4\n'
        '12/02 14:36:58 - mmengine - INFO - Epoch(train) [3][ 20/40]  lr: 1e-4\n')
    started, fraction = demo.job_progress(str(tmp_path), epochs=8)
    assert started == 1000.0 and fraction == pytest.approx((2 * 40 + 20) / (8 * 40))


def test_the_estimate_uses_finished_runs_then_running_ones():
    # nothing measured yet: no estimate rather than a made-up one
    assert demo.detection_eta([None, None], [], jobs=2, now=0.0) is None
    # two runs a quarter done after 1 min each (4 min per run), two queued:
    # 0.75 + 0.75 + 1 + 1 runs of 4 min shared by 2 processes
    running = [(0.0, 0.25), (0.0, 0.25), None, None]
    assert demo.detection_eta(running, [], jobs=2, now=60.0) == pytest.approx(7.0)
    # a finished run's duration (2 min) wins over the extrapolation
    assert demo.detection_eta(running, [2.0], jobs=2, now=60.0) == pytest.approx(3.5)


@pytest.mark.slow
@pytest.mark.e2e  # make test-e2e
def test_quick_demo_gain_exceeds_the_spread(tmp_path, capsys):
    """The whole main job on ``--quick``'s 2 seeds with still shorter schedules
    (pretraining 4 epochs, detection 2), in the precision the machine chooses: the
    headline holds there too, and the progress lines estimate the time left. The
    full demo's figures: docs/demo.md."""
    assert demo.main(['--quick', '--pretrain-epochs', '4', '--detect-epochs', '2',
                      '--work-dir', str(tmp_path),
                      '--release', str(tmp_path / 'release.pth')]) == 0
    out = capsys.readouterr().out
    summary = out[out.index('[demo] ----'):]
    assert 'pretraining gain: +' in summary and ': holds (' in summary, summary
    assert 'min left' in out and '[demo] detection: 4/4 runs done' in out
    for name in ('pretraining', 'detection'):
        assert osp.getsize(tmp_path / f'{name}_curves.png') > 10_000
    for seed in (0, 1):
        log = (tmp_path / f'detection_random_seed{seed}' / demo.JOB_LOG).read_text()
        assert 'Epoch(train) [2]' in log  # each run's own output went to its own log
    # the trained detector deploys: the same detections and mAP in both runtimes
    import deploy
    checkpoint = max(glob.glob(str(tmp_path / 'detection_pretrained_seed0' / 'epoch_*.pth')))
    assert deploy.main([demo.DET_CONFIG, checkpoint, '--backend', 'onnxruntime', 'openvino',
                        '--eval', '--max-batches', '2',  # 32 of the 80 images
                        '--work-dir', str(tmp_path / 'deploy')]) == 0
    out = capsys.readouterr().out
    for backend in ('onnxruntime', 'openvino'):
        assert f'{backend}: images whose detections differ: 0' in out, out
    pytorch, *runtimes = (float(m) for m in re.findall(r"bbox_mAP': ([0-9.]+)", out))
    assert pytorch > 0.01 and len(runtimes) == 2, out
    assert all(abs(pytorch - runtime) <= 0.001 for runtime in runtimes), out
