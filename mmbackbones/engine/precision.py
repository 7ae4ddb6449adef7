"""Mixed precision on every device, chosen from one config.

The recipe's ``optim_wrapper`` is MMEngine's ``AmpOptimWrapper``; MMEngine asserts
CUDA there. :func:`choose_precision` keeps it on a GPU (fp16 with loss scaling, or
``dtype='bfloat16'``) and, without CUDA, turns it into bf16 autocast on a CPU
with native bf16 (AMX or AVX512-BF16 on x86, the BF16 extension on Arm:
:class:`CPUAmpOptimWrapper`) or into fp32 ``OptimWrapper`` on one without,
where bf16 is emulated and slower than fp32. Mixed precision also puts the model
and its batches in channels-last (:class:`ChannelsLastHook`), the layout oneDNN
and tensor cores run natively.
"""
import contextlib
import logging
import os
import platform
from typing import FrozenSet, Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from torch import nn

from ..registry import HOOKS, OPTIM_WRAPPERS

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
    """Whether this CPU computes bf16 natively (so bf16 autocast pays)."""
    forced = os.environ.get(CPU_BF16_ENV)
    if forced is not None:
        if forced not in ('0', '1'):
            raise ValueError(f'{CPU_BF16_ENV}={forced!r}; valid: 1 (bf16) or 0 (fp32)')
        return forced == '1'
    if not torch.backends.mkldnn.is_available():
        return False
    flags = _cpu_flags()
    if platform.machine().lower() in ('aarch64', 'arm64'):
        return 'bf16' in flags
    return bool(X86_BF16_FLAGS & flags)


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``AmpOptimWrapper`` for CPUs: the forward runs under bf16 autocast, the
    weights (and so the checkpoints) stay fp32. No loss scaling: bf16 has fp32's
    exponent range, so gradients do not underflow as fp16's do."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cast_dtype = torch.bfloat16

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield

    def load_state_dict(self, state_dict: dict) -> None:
        # a checkpoint of a GPU run also holds its loss scaler, which has no use here
        state_dict = {k: v for k, v in state_dict.items() if k != 'loss_scaler'}
        super().load_state_dict(state_dict)


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Model weights and every batch in channels-last (NHWC) memory.

    The weights are converted in place (the optimizer keeps its parameters); the
    batches on their way out of the data preprocessor.
    """
    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        model.to(memory_format=torch.channels_last)
        preprocessor = getattr(model, 'data_preprocessor', None)
        if preprocessor is not None:
            preprocessor.register_forward_hook(_batch_to_channels_last)


def _batch_to_channels_last(module: nn.Module, args, output):
    if isinstance(output, dict) and isinstance(output.get('inputs'), torch.Tensor) \
            and output['inputs'].dim() == 4:
        output['inputs'] = output['inputs'].contiguous(memory_format=torch.channels_last)
    return output


AMP_WRAPPERS = ('AmpOptimWrapper', 'mmengine.AmpOptimWrapper')


def choose_precision(cfg, cuda: bool) -> Optional[torch.dtype]:
    """Adapt ``cfg`` to this machine's mixed precision; returns the autocast dtype
    (``None``: fp32).

    * ``AmpOptimWrapper`` on CUDA: kept (its ``dtype``, fp16 by default).
    * ``AmpOptimWrapper`` without CUDA: :class:`CPUAmpOptimWrapper` on a CPU with
      native bf16, else fp32 ``OptimWrapper`` (one log line says which).
    * any other wrapper: fp32, and the AMP-only keys are dropped.

    With mixed precision, validation and testing run under the same autocast
    (MMEngine's ``fp16`` loop flag: bf16 on CPU) and :class:`ChannelsLastHook`
    is added.
    """
    optim = cfg.get('optim_wrapper')
    dtype = None
    if optim is not None and optim.get('type') in AMP_WRAPPERS:
        if cuda:
            dtype = getattr(torch, str(optim.get('dtype') or 'float16'))
        elif cpu_bf16_supported():
            dtype = torch.bfloat16
            print_log('no CUDA device: mixed precision with bf16 autocast on this CPU '
                      '(native bf16) and channels-last', logger='current')
            optim.type = 'mmbackbones.CPUAmpOptimWrapper'
        else:
            print_log('no CUDA device and no native bf16 on this CPU: fp32 '
                      '(OptimWrapper instead of AmpOptimWrapper)', logger='current',
                      level=logging.WARNING)
            optim.type = 'OptimWrapper'
    if optim is not None and optim.get('type') not in AMP_WRAPPERS:
        for key in AMP_ONLY_KEYS:
            optim.pop(key, None)
    if dtype is not None:
        for loop in ('val_cfg', 'test_cfg'):
            if cfg.get(loop) is not None:
                cfg[loop]['fp16'] = True  # MMEngine's autocast switch (bf16 on CPU)
        hooks = list(cfg.get('custom_hooks') or [])
        if not any(str(h.get('type', '')).endswith('ChannelsLastHook') for h in hooks):
            hooks.append(dict(type='mmbackbones.ChannelsLastHook'))
        cfg.custom_hooks = hooks
    return dtype


#: arguments of AmpOptimWrapper that OptimWrapper refuses
AMP_ONLY_KEYS = ('loss_scale', 'dtype', 'use_fsdp')
