"""Helpers for tests that train: small derived configs and subprocess runs; the
variants that cover every code path."""
import os
import os.path as osp
import socket
import subprocess
import sys
import textwrap

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'vovnet19slim_digits.py')


#: one variant of each code path of the backbones (block types, activations, layouts)
CODE_PATHS = ['CSPDarknet-19', 'Darknet-19', 'Darknet-53-LeakyReLU-0.1', 'EfficientNet-B0',
              'MobileNetV2', 'MobileNetV3-large', 'MobileNetV3-small', 'ResNeXt-50-32x4d',
              'ResNet-18', 'ResNet-50', 'VoVNet-19', 'VoVNet-19-slim', 'VoVNet-19-V1',
              'VoVNet-19-S4', 'VoVNet-39-S4-V1', 'VoVNet-39-S4-lastESE', 'WideResNet-50-2']


def write_small_config(folder, data_root: str, *, images: int = 96, batch: int = 32,
                       epochs: int = 3, validate: bool = False, extra: str = '') -> str:
    """The demo config on ``images`` training images, ``epochs`` short epochs,
    a checkpoint every epoch, deterministic."""
    path = osp.join(str(folder), 'small_config.py')
    val = ('val_dataloader = dict(batch_size=32, num_workers=0, dataset=dict(indices=64, '
           f'data_root={data_root!r}))\nval_cfg = dict()\n'
           'train_cfg = dict(max_epochs=%d, val_interval=%d)' % (epochs, epochs)
           if validate else
           'val_dataloader = None\nval_cfg = None\nval_evaluator = None\n'
           f'train_cfg = dict(max_epochs={epochs}, val_interval={epochs + 1})')
    with open(path, 'w') as f:
        f.write(textwrap.dedent(f'''\
            _base_ = [{DEMO_CONFIG!r}]
            train_dataloader = dict(
                batch_size={batch}, num_workers=1,
                dataset=dict(data_root={data_root!r}, indices={images}))
            test_dataloader = dict(dataset=dict(data_root={data_root!r}))
            {{val}}
            param_scheduler = [
                dict(type='LinearLR', start_factor=0.01, end_factor=1.0, by_epoch=True,
                     begin=0, end=1, convert_to_iter_based=True),
                dict(type='CosineAnnealingLR', T_max={epochs - 1}, eta_min=0.0,
                     by_epoch=True, begin=1, end={epochs}, convert_to_iter_based=True)]
            default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=-1,
                                                 save_best=None),
                                 logger=dict(interval=1))
            randomness = dict(seed=0, deterministic=True)
            ''').replace('{val}', val) + extra)
    return path


def random_bn_statistics(model, mean: float = 0.2):
    """``model`` in eval mode with random BatchNorm statistics and affine terms
    (seeded), so that a mis-mapped or mis-folded norm shows in the outputs."""
    import torch
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-mean, mean)
            m.running_var.uniform_(0.5, 2.0)
            if m.affine:
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)
    model.eval()  # MMDetection's Darknet.train() returns None
    return model


def assert_checkpointing_keeps_gradients(plain, checkpointed, x=None) -> None:
    """``checkpointed`` (``with_cp=True``), given ``plain``'s weights, computes the
    same gradients in training mode."""
    import torch
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64) if x is None else x
    for model in (plain.train(), checkpointed.train()):
        sum(o.sum() for o in model(x)).backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_tool(args, env=None, timeout=600, check=True) -> subprocess.CompletedProcess:
    """Run a tools/ script (or shell script) from the repository root."""
    full_env = {**os.environ, 'PYTHONPATH': ROOT, 'OMP_NUM_THREADS': '1', **(env or {})}
    cmd = args if args[0].endswith('.sh') else [sys.executable] + args
    result = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f'{cmd} failed ({result.returncode}):\n{result.stdout[-3000:]}'
                             f'\n{result.stderr[-5000:]}')
    return result
