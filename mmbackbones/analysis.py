"""Model size: parameters, multiply-accumulates (MACs) and FLOPs.

Counts come from MMEngine's complexity analysis, which counts one fused
multiply-add per MAC and skips normalization and elementwise ops. FLOPs are
reported as 2 x MACs, the convention of the reference tables.
"""
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import torch
from mmengine.analysis import FlopAnalyzer
from torch import nn


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int

    @property
    def flops(self) -> int:
        return 2 * self.macs


class _Call(nn.Module):
    """Presents ``fn(model, x)`` as a module so the tracer sees one input."""

    def __init__(self, model: nn.Module, fn: Callable):
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, x):
        return self.fn(self.model, x)


def measure(model: nn.Module, shape: Sequence[int] = (224, 224), in_channels: int = 3,
            call: Optional[Callable] = None) -> Complexity:
    """Count the parameters of ``model`` and the MACs of one ``1 x C x H x W``
    forward (``call(model, x)`` when given, e.g. a detector's tensor mode)."""
    height, width = shape
    x = torch.zeros(1, in_channels, height, width)
    traced = model if call is None else _Call(model, call)
    was_training = model.training
    model.eval()
    try:
        analyzer = FlopAnalyzer(traced, (x, ))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        with torch.no_grad():
            macs = analyzer.total()
    finally:
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return Complexity(params=params, macs=macs)


def format_row(name: str, c: Complexity) -> Tuple[str, str, str, str]:
    return (name, f'{c.params / 1e6:.2f}', f'{c.macs / 1e9:.3f}', f'{c.flops / 1e9:.2f}')


def markdown_table(rows: Sequence[Tuple[str, ...]], what: str = 'backbone') -> str:
    """Rows of :func:`format_row`; ``what`` names the first column (a backbone,
    or a whole model built from a config)."""
    header = (what, 'params (M)', 'GMACs', 'GFLOPs (2 x MACs)')
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines)
