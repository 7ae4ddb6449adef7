"""Throughput of backbones, side by side with a reference, in one process.

Runs alternate between the models (ours, reference, ours, ...) so that machine
noise hits both alike; each repeat times ``iters`` steps after ``warmup`` steps;
reported are the median and the spread (min..max) of the per-step times over the
repeats, and the ratio of median throughputs (> 1: ours is faster).
"""
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .deploy import deploy


@dataclass(frozen=True)
class Setting:
    mode: str = 'infer'                 # 'infer' or 'train' (forward + backward + SGD step)
    batch: int = 8
    shape: Sequence[int] = (224, 224)
    # 'fp32' or 'bf16': inference casts weights and inputs (deploy(dtype=...) when
    # fused), training runs under autocast with fp32 master weights
    dtype: str = 'fp32'
    channels_last: bool = False
    compile: bool = False
    fused: bool = False                 # inference through deploy() (BN folded)
    device: str = 'cpu'

    def __post_init__(self):
        if self.mode not in ('infer', 'train'):
            raise ValueError(f"mode must be 'infer' or 'train', got {self.mode!r}")
        if self.dtype not in ('fp32', 'bf16'):
            raise ValueError(f"dtype must be 'fp32' or 'bf16', got {self.dtype!r}")
        if self.fused and self.mode == 'train':
            raise ValueError('fused models are for inference: use mode=infer')


@dataclass
class Result:
    name: str
    step_times: List[float] = field(default_factory=list)   # seconds, one per repeat
    peak_memory_mb: Optional[float] = None

    @property
    def median(self) -> float:
        return statistics.median(self.step_times)

    def throughput(self, batch: int) -> float:
        return batch / self.median


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def _outputs_sum(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out.float().mean()
    return sum(o.float().mean() for o in out)


def make_step(model: nn.Module, setting: Setting) -> Callable[[], None]:
    """One benchmark step of ``model`` under ``setting`` (the model is prepared
    in place: device, memory format, fusion, compilation)."""
    memory_format = torch.channels_last if setting.channels_last else torch.contiguous_format
    model = model.to(setting.device, memory_format=memory_format)
    x = torch.randn(setting.batch, 3, *setting.shape, device=setting.device)
    x = x.contiguous(memory_format=memory_format)
    if setting.mode == 'infer':
        model.eval()
        dtype = torch.bfloat16 if setting.dtype == 'bf16' else None
        if setting.fused:
            runner = deploy(model, channels_last=setting.channels_last,
                            compile=setting.compile, inplace=True, dtype=dtype)
        else:
            if dtype is not None:
                model.to(dtype)
            runner = torch.compile(model, fullgraph=True) if setting.compile else model
        x = x.to(dtype or x.dtype)

        def step():
            with torch.no_grad():
                runner(x)
        return step

    autocast = (torch.autocast(setting.device.split(':')[0], dtype=torch.bfloat16)
                if setting.dtype == 'bf16' else nullcontext())
    model.train()
    runner = torch.compile(model, fullgraph=True) if setting.compile else model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)

    def step():
        with autocast:
            loss = _outputs_sum(runner(x))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def saved_activation_mb(step: Callable[[], None]) -> float:
    """Bytes the autograd graph keeps for backward during one training step: the
    activation memory of training, measured the same way on CPU and GPU."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return total / 2**20


def compare(runs: Dict[str, Tuple[nn.Module, Setting]], repeats: int = 7,
            iters: int = 3, warmup: int = 2) -> Dict[str, Result]:
    """Time every ``(model, setting)`` run, alternating between them. The runs
    share mode, batch and device so that their throughputs compare."""
    settings = [setting for _, setting in runs.values()]
    shared = {(s.mode, s.batch, tuple(s.shape), s.device) for s in settings}
    if len(shared) != 1:
        raise ValueError(f'runs to compare must share mode, batch, shape and device, got {shared}')
    device = settings[0].device
    steps = {name: make_step(model, setting) for name, (model, setting) in runs.items()}
    results = {name: Result(name) for name in runs}
    for name, step in steps.items():
        if device.startswith('cuda'):
            torch.cuda.reset_peak_memory_stats()
        for _ in range(warmup):
            step()
        _sync(device)
        if device.startswith('cuda'):
            results[name].peak_memory_mb = torch.cuda.max_memory_allocated() / 2**20
        elif settings[0].mode == 'train':
            results[name].peak_memory_mb = saved_activation_mb(step)
    timed = alternate(steps, repeats, iters, warmup=0, sync=lambda: _sync(device))
    for name, result in timed.items():
        results[name].step_times = result.step_times
    return results


def alternate(steps: Dict[str, Callable[[], object]], repeats: int = 7, iters: int = 3,
              warmup: int = 2, sync: Callable[[], None] = lambda: None) -> Dict[str, Result]:
    """Time each of ``steps`` (name -> a callable doing one step), alternating
    between them every repeat; ``warmup`` untimed calls each first."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    results = {name: Result(name) for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            sync()
            start = time.perf_counter()
            for _ in range(iters):
                step()
            sync()
            results[name].step_times.append((time.perf_counter() - start) / iters)
    return results


def reference_model(name: str, kwargs: dict) -> Optional[nn.Module]:
    """The same architecture from timm (Darknet-53, any ``Timm``: timm's own
    ``features_only`` model) or torchvision (the ports), cut to the backbone, or
    None when there is no identical reference."""
    from .models.torchvision_ports import TorchvisionPort
    from .registry import MODELS
    cls = MODELS.get(name)
    if name == 'Darknet' and kwargs.get('depth', 53) == 53:
        import timm  # the optional, pinned benchmark extra
        return timm.create_model('darknet53', pretrained=False, num_classes=0,
                                 global_pool='')
    if name == 'Timm':
        import inspect

        import timm
        own = inspect.signature(cls).parameters  # the rest are timm's keywords
        model_kwargs = {**kwargs.get('model_kwargs', {}),
                        **{k: v for k, v in kwargs.items() if k not in own}}
        return timm.create_model(kwargs['model_name'], pretrained=False, features_only=True,
                                 in_chans=kwargs.get('in_channels', 3), **model_kwargs)
    if cls is not None and issubclass(cls, TorchvisionPort):
        import torchvision.models as tvm
        arch = cls(**kwargs).tv_arch
        model = getattr(tvm, arch.builder)(weights=None)
        if hasattr(model, 'features'):
            return model.features
        return nn.Sequential(*list(model.children())[:-2])  # drop avgpool and fc
    return None
