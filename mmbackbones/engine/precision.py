"""Mixed precision on every device, chosen from one config.

The recipe's ``optim_wrapper`` is MMEngine's ``AmpOptimWrapper``; MMEngine asserts
CUDA there. :func:`choose_precision` keeps it on a GPU (fp16 with loss scaling, or
``dtype='bfloat16'``). Without CUDA, on a CPU with native bf16 (AMX or
AVX512-BF16 on x86, the BF16 extension on Arm) the model's features (backbone and
neck) run under bf16 autocast (:class:`MixedPrecisionHook`) with fp32 weights and
no loss scaling (bf16 has fp32's exponent range); on one without, where bf16 is
emulated and slower than fp32, everything stays fp32. Mixed precision also puts
the model and its batches in channels-last, the layout oneDNN and tensor cores
run natively.
"""
import functools
import logging
import os
import platform
import types
from typing import FrozenSet, Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from ..registry import HOOKS

#: ``1`` or ``0`` forces the CPU bf16 detection (tests; a CPU whose flags lie)
CPU_BF16_ENV = 'MMBACKBONES_CPU_BF16'
#: x86 flags of native bf16 arithmetic; plain AVX512 only emulates it
X86_BF16_FLAGS = frozenset({'avx512_bf16', 'amx_bf16'})


def _cpu_flags() -> FrozenSet[str]:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() in ('flags', 'Features'):  # x86, Arm
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cpu_bf16_supported() -> bool:
    """Whether CPU runs use bf16: this CPU computes it natively (so bf16
    autocast pays), or ``MMBACKBONES_CPU_BF16`` says so."""
    forced = os.environ.get(CPU_BF16_ENV)
    if forced is not None:
        if forced not in ('0', '1'):
            raise ValueError(f'{CPU_BF16_ENV}={forced!r}; valid: 1 (bf16) or 0 (fp32)')
        return forced == '1'
    return native_cpu_bf16()


def native_cpu_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic (AMX/AVX512-BF16, Arm BF16)."""
    if not torch.backends.mkldnn.is_available():
        return False
    flags = _cpu_flags()
    if platform.machine().lower() in ('aarch64', 'arm64'):
        return 'bf16' in flags
    return bool(X86_BF16_FLAGS & flags)


@HOOKS.register_module()
class MixedPrecisionHook(Hook):
    """Channels-last (NHWC) weights and batches and, with ``dtype``, bf16 autocast
    of the model's features, in training and evaluation alike; with
    ``eval_dtype`` (CUDA, where AmpOptimWrapper autocasts training), evaluation's
    ``val_step``/``test_step`` autocast in that dtype.

    The autocast covers ``extract_feat`` (backbone and neck, where MMPretrain's and
    MMDetection's models spend their time), or ``forward`` for a model without
    one, and returns fp32 features: the heads run in fp32 because mmcv's CPU ops
    (NMS, RoIAlign) take fp32 only. Weights are converted in place (the optimizer
    keeps its parameters); batches on their way out of the data preprocessor.
    """
    priority = 'VERY_HIGH'

    def __init__(self, dtype: Optional[str] = None, channels_last: bool = True,
                 eval_dtype: Optional[str] = None):
        self.dtype = getattr(torch, dtype) if dtype else None
        self.eval_dtype = getattr(torch, eval_dtype) if eval_dtype else None
        self.channels_last = channels_last

    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
            preprocessor = getattr(model, 'data_preprocessor', None)
            if preprocessor is not None:
                preprocessor.register_forward_hook(_batch_to_channels_last)
        if self.eval_dtype is not None:  # on CUDA: AmpOptimWrapper autocasts training
            for name in ('val_step', 'test_step'):
                setattr(model, name, types.MethodType(
                    _autocast(getattr(type(model), name), self.eval_dtype), model))
        if self.dtype is not None:
            name = 'extract_feat' if hasattr(model, 'extract_feat') else 'forward'
            # a method bound to the model: a deep copy (EMA) rebinds it to the copy
            setattr(model, name, types.MethodType(
                _autocast_to_fp32(getattr(type(model), name), self.dtype), model))


def _autocast(method, dtype: torch.dtype):
    """``method`` under autocast in ``dtype`` on the model's device."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        device = next(self.parameters()).device.type
        with torch.autocast(device, dtype=dtype):
            return method(self, *args, **kwargs)
    run.autocast_dtype = dtype
    return run


def _autocast_to_fp32(method, dtype: torch.dtype):
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with torch.autocast('cpu', dtype=dtype):
            out = method(self, *args, **kwargs)
        return _to_fp32(out)
    run.autocast_dtype = dtype
    return run


def _to_fp32(value):
    if torch.is_tensor(value):
        return value.float() if value.dtype == torch.bfloat16 else value
    if isinstance(value, (tuple, list)):
        return type(value)(_to_fp32(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_fp32(v) for k, v in value.items()}
    return value


def _batch_to_channels_last(module: nn.Module, args, output):
    if isinstance(output, dict) and isinstance(output.get('inputs'), torch.Tensor) \
            and output['inputs'].dim() == 4:
        output['inputs'] = output['inputs'].contiguous(memory_format=torch.channels_last)
    return output


AMP_WRAPPERS = ('AmpOptimWrapper', 'mmengine.AmpOptimWrapper')
#: arguments of AmpOptimWrapper that OptimWrapper refuses
AMP_ONLY_KEYS = ('loss_scale', 'dtype', 'use_fsdp')


def choose_precision(cfg, cuda: bool) -> Optional[torch.dtype]:
    """Adapt ``cfg`` to this machine's mixed precision; returns the autocast dtype
    (``None``: fp32).

    * ``AmpOptimWrapper`` on CUDA: kept (its ``dtype``, fp16 by default);
      validation and testing autocast in that same dtype (:class:`MixedPrecisionHook`'s
      ``eval_dtype``; MMEngine's loops' ``fp16`` would use fp16 for a bf16 recipe).
    * ``AmpOptimWrapper`` without CUDA (MMEngine asserts CUDA there): fp32
      ``OptimWrapper`` and, on a CPU with native bf16, bf16 autocast of the
      features by :class:`MixedPrecisionHook`; one log line says which.
    * any other wrapper: fp32, and the AMP-only keys are dropped.

    Mixed precision adds :class:`MixedPrecisionHook` (channels-last everywhere).
    """
    optim = cfg.get('optim_wrapper')
    dtype = None
    if optim is not None and optim.get('type') in AMP_WRAPPERS:
        if cuda:
            dtype = getattr(torch, str(optim.get('dtype') or 'float16'))
            for loop in ('val_cfg', 'test_cfg'):
                if cfg.get(loop) is not None:
                    # MMEngine's loops' fp16 autocasts in CUDA's default, fp16, whatever
                    # the training dtype: the hook autocasts evaluation in it instead
                    cfg[loop].pop('fp16', None)
        else:
            optim.type = 'OptimWrapper'
            if cpu_bf16_supported():
                dtype = torch.bfloat16
                if native_cpu_bf16():
                    print_log('no CUDA device: mixed precision with bf16 autocast of the '
                              'features on this CPU (native bf16) and channels-last',
                              logger='current')
                else:
                    print_log(f'no CUDA device: bf16 autocast of the features because '
                              f'{CPU_BF16_ENV}=1, on a CPU WITHOUT native bf16: it is '
                              f'emulated, several times slower than fp32; unset it (or '
                              f'set 0) for fp32', logger='current', level=logging.WARNING)
            else:
                print_log('no CUDA device and no native bf16 on this CPU: fp32 '
                          '(OptimWrapper instead of AmpOptimWrapper)', logger='current',
                          level=logging.WARNING)
    if optim is not None and optim.get('type') not in AMP_WRAPPERS:
        for key in AMP_ONLY_KEYS:
            optim.pop(key, None)
    if dtype is not None:
        hooks = [h for h in cfg.get('custom_hooks') or []
                 if not str(h.get('type', '')).endswith('MixedPrecisionHook')]
        hooks.append(dict(type='mmbackbones.MixedPrecisionHook', dtype=None, eval_dtype=str(
            dtype).split('.')[-1]) if cuda else dict(type='mmbackbones.MixedPrecisionHook',
                                                     dtype='bfloat16'))
        cfg.custom_hooks = hooks
    return dtype

