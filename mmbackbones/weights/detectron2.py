"""Detectron2's own ResNet (``build_resnet_backbone``; under ``backbone.bottom_up.``
in its FPN detectors), as its model zoo files hold it.

Detectron2's ResNets are MSRA's: ``RESNETS.STRIDE_IN_1X1`` is True by default,
so a downsampling bottleneck strides in its first 1x1 conv (our
``style='caffe'``), and its norms are FrozenBN (no ``num_batches_tracked``: the
converter fills it). ``res2`` follows the stem's max pool, which opens our
stage 2, so its blocks move up by one.
"""
from .layout import Layout, renamed, rules

_PARAM = r'(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)'

#: a bottleneck's tensors: Detectron2's names -> torchvision's, which our ResNet keeps
BLOCK = {
    r'(?P<c>conv[1-3])\.weight': '{c}.weight',
    rf'conv(?P<i>[1-3])\.norm\.{_PARAM}': 'bn{i}.{p}',
    r'shortcut\.weight': 'downsample.0.weight',
    rf'shortcut\.norm\.{_PARAM}': 'downsample.1.{p}',
}


def _in_stage(tail: str):
    """``res<s>.<b>.<tensor>`` -> ``stage<s>.<b>.<tail>``; ``res2`` follows the
    max pool that opens our stage 2, so its blocks move up by one."""
    def replace(match) -> str:
        values = match.groupdict()
        block = int(values['b']) + (values['s'] == '2')
        return f"stage{values['s']}.{block}." + tail.format(**values)
    return replace


RULES = rules(
    (r'stem\.conv1\.weight', 'stem.0.weight'),
    (rf'stem\.conv1\.norm\.{_PARAM}', renamed('stem.1.{p}')),
    *((rf'res(?P<s>[2-5])\.(?P<b>\d+)\.{theirs}', _in_stage(ours))
      for theirs, ours in BLOCK.items()),
)

#: Detectron2's model zoo: R-50 and R-101 with ``STRIDE_IN_1X1`` (its default)
LAYOUTS = tuple(
    Layout(f'detectron2:R-{d}', 'ResNet', dict(depth=d, style='caffe'), RULES,
           top1='MSRA\'s original ResNet (Detectron2\'s ImageNetPretrained/MSRA/R-'
                f'{d}.pkl); Detectron2 publishes no figure',
           note='Detectron2\'s model zoo detectors (RESNETS.STRIDE_IN_1X1 True)')
    for d in (50, 101)
)
