"""Training through MMEngine on the embedded demo data: the recipe's pipeline,
CPU distributed training, resuming, and atomic checkpoints."""
import math
import os
import re
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.hooks import Hook

from mmbackbones.checkpoint import safe_load
from mmbackbones.models.layers import NORM_TYPES
from training_utils import ROOT, free_port, run_tool, write_small_config


class Recorder(Hook):
    priority = 'VERY_LOW'

    def __init__(self):
        self.lrs, self.losses = [], []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.lrs.append(runner.optim_wrapper.get_lr()['lr'][0])

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.append(float(outputs['loss']))


@pytest.mark.slow
def test_short_run_of_the_full_recipe(digits_root, tmp_path):
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import train as train_tool
    epochs = 4
    path = write_small_config(tmp_path, digits_root, images=256, batch=32, epochs=epochs)
    cfg = train_tool.build_config(train_tool.parse_args([path, '--work-dir', str(tmp_path)]))
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    recorder = Recorder()
    runner.register_hook(recorder)
    model = runner.train()

    # every per-sample transform of the recipe ran, and MixUp/CutMix are on
    pipeline = runner.train_dataloader.dataset.pipeline
    assert 'TrivialAugmentWide' in repr(pipeline) and 'RandomErasing' in repr(pipeline)
    assert model.data_preprocessor.batch_augments is not None

    losses = recorder.losses
    assert all(math.isfinite(x) for x in losses)
    k = len(losses) // 4
    assert sum(losses[-k:]) / k < sum(losses[:k]) / k, losses

    # warmup over epoch 1, then cosine, updated every iteration
    n = len(losses) // epochs
    base = 0.5 * 32 / 1024  # auto-scaled for one process x batch 32
    lrs = recorder.lrs
    assert lrs[0] == pytest.approx(base * 0.01)
    assert all(b > a for a, b in zip(lrs[:n - 1], lrs[1:n]))  # MMEngine reaches the
    assert lrs[n - 1] == pytest.approx(base)  # end factor on the last warmup iteration
    assert lrs[n] == pytest.approx(base)
    for i in range(n, len(lrs)):
        expected = base * (1 + math.cos(math.pi * (i - n) / ((epochs - 1) * n))) / 2
        assert lrs[i] == pytest.approx(expected, rel=1e-5, abs=1e-9), i

    norm_params = {id(p) for m in model.modules() if isinstance(m, NORM_TYPES)
                   for p in m.parameters()}
    for group in runner.optim_wrapper.optimizer.param_groups:
        for p in group['params']:
            assert group['weight_decay'] == (0.0 if id(p) in norm_params else 2e-5)


RANK_PROBE = '''
import os
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.dist import get_rank, get_world_size


@HOOKS.register_module()
class RankProbeHook(Hook):
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        with open(os.path.join(runner.work_dir, f'rank{get_rank()}.log'), 'a') as f:
            f.write(f'{runner.iter} {get_world_size()} {type(runner.model).__name__}\\n')
'''


@pytest.mark.slow
def test_two_process_cpu_training_and_resume(digits_root, tmp_path):
    (tmp_path / 'rankprobe.py').write_text(RANK_PROBE)
    extra = ("custom_imports = dict(imports=['mmbackbones', 'rankprobe'])\n"
             "custom_hooks = [dict(type='mmbackbones.EpochSeedHook'), "
             "dict(type='RankProbeHook')]\n")
    path = write_small_config(tmp_path, digits_root, images=128, batch=16, epochs=2,
                              validate=True, extra=extra)
    work = tmp_path / 'work'
    env = dict(PORT=str(free_port()), PYTHONPATH=f'{ROOT}:{tmp_path}')
    run_tool(['tools/dist_train.sh', path, '2', '--work-dir', str(work),
              '--cfg-options', 'train_cfg.max_epochs=1'], env=env)
    # 128 images / (2 processes x 16) = 4 iterations, on both ranks, under DDP
    for rank in (0, 1):
        lines = (work / f'rank{rank}.log').read_text().split()
        assert lines[0::3] == ['0', '1', '2', '3'], lines  # runner.iter before increment
        assert set(lines[1::3]) == {'2'} and set(lines[2::3]) == {'MMDistributedDataParallel'}
    assert sorted(p.name for p in work.glob('*.pth')) == ['epoch_1.pth']
    assert safe_load(str(work / 'epoch_1.pth'))['meta']['iter'] == 4

    # resume: the second epoch continues from iteration 4, then a 2-process evaluation
    # (validation at the end of epoch 2; tools/dist_test.sh launches the same way)
    result = run_tool(['tools/dist_train.sh', path, '2', '--work-dir', str(work), '--resume'],
                      env=env)
    for rank in (0, 1):
        lines = (work / f'rank{rank}.log').read_text().split()
        assert lines[0::3] == [str(i) for i in range(8)], lines
    meta = safe_load(str(work / 'epoch_2.pth'))['meta']
    assert (meta['epoch'], meta['iter']) == (2, 8)

    match = re.search(r'Epoch\(val\) \[2\]\[1/1\]\s+accuracy/top1: ([0-9.]+)',
                      result.stdout + result.stderr)  # 64 images / (2 processes x 32)
    assert match and 0 <= float(match.group(1)) <= 100, result.stdout[-2000:]


def final_weights(work_dir, epoch):
    return safe_load(osp.join(work_dir, f'epoch_{epoch}.pth'))['state_dict']


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(digits_root, tmp_path):
    """In the precision the recipe takes on this machine (bf16 autocast on a CPU
    with native bf16, else fp32; emulated bf16 would make this test minutes long):
    resumes that switch precision are test_precision's
    test_resume_across_precisions."""
    epochs = 4
    path = write_small_config(tmp_path, digits_root, images=64, batch=16, epochs=epochs)
    straight, killed = tmp_path / 'straight', tmp_path / 'killed'
    run_tool(['tools/train.py', path, '--work-dir', str(straight)])

    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.Popen([sys.executable, 'tools/train.py', path, '--work-dir',
                             str(killed)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / 'epoch_1.pth').exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = sorted(p.name for p in killed.glob('epoch_*.pth'))
    assert 'epoch_1.pth' in written and f'epoch_{epochs}.pth' not in written, written
    for ckpt in killed.glob('*.pth'):  # whatever exists is complete
        safe_load(str(ckpt))
    # the worst moment to be killed: after a checkpoint, before MMEngine's
    # last_checkpoint pointer to it (at random it hit about one run in ten)
    (killed / 'last_checkpoint').unlink(missing_ok=True)
    latest = max(int(name[len('epoch_'):-len('.pth')]) for name in written)

    result = run_tool(['tools/train.py', path, '--work-dir', str(killed), '--resume'])
    log = result.stdout + result.stderr
    assert f'resumed epoch: {latest},' in log
    from mmbackbones.engine.precision import cpu_bf16_supported
    assert ('bf16 autocast' in log) == cpu_bf16_supported()
    a, b = final_weights(straight, epochs), final_weights(killed, epochs)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0,
                                   msg=f'{key} (killed after {written}); {log[-1500:]}')


def test_resume_takes_the_newest_checkpoint_not_just_the_pointer(tmp_path):
    from mmbackbones.engine import latest_checkpoint
    assert latest_checkpoint(str(tmp_path / 'missing')) is None
    assert latest_checkpoint(str(tmp_path)) is None
    for name in ('epoch_2.pth', 'epoch_10.pth', 'best_accuracy_epoch_11.pth', 'epoch_3.pth'):
        (tmp_path / name).write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_3.pth'))
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_10.pth')
    elsewhere = tmp_path / 'out' / 'epoch_12.pth'  # CheckpointHook(out_dir=...)
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text(str(elsewhere))
    assert latest_checkpoint(str(tmp_path)) == str(elsewhere)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    from mmbackbones.engine.atomic_io import AtomicLocalBackend
    from mmengine.fileio import get_file_backend
    target = tmp_path / 'epoch_1.pth'
    backend = get_file_backend(str(target))
    assert isinstance(backend, AtomicLocalBackend)  # what MMEngine's checkpointing uses
    backend.put(b'complete', str(target))

    with pytest.raises(UnicodeEncodeError):  # fails after the temporary file exists
        backend.put_text('\udcff', str(target))
    assert target.read_bytes() == b'complete'
    assert [p.name for p in tmp_path.iterdir()] == ['epoch_1.pth']
