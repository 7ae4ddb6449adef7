#!/usr/bin/env python
"""Convert an mmbackbones MMPretrain checkpoint to Detectron2's key layout, for
``DetectionCheckpointer`` / ``MODEL.WEIGHTS``:

    python tools/convert_to_detectron2.py checkpoints/vovnet39_imagenet.pth \\
        checkpoints/vovnet39_d2.pth --arch fpn

Public checkpoints that :func:`mmbackbones.convert_weights` knows (timm,
vovnet-detectron2, MMDetection, ...) are converted on the way.

``--arch fpn`` (FPN builders: keys under ``backbone.bottom_up.body.``) or ``plain``
(``build_mmbackbones_backbone``: ``backbone.body.``). Only the backbone is kept;
every one of its tensors is written, and a file without backbone weights is refused.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)

D2_PREFIX = {'fpn': 'backbone.bottom_up.body.', 'plain': 'backbone.body.'}


def convert(src: str, dst: str, arch: str = 'fpn', prefix: str = 'backbone.',
            backbone: str = None) -> int:
    """Write ``src``'s backbone under Detectron2's prefix; returns the tensor
    count. The weights go through :func:`mmbackbones.load_weights` into the
    network the file names (its ``meta.backbone``, or its public layout's), or
    ``backbone`` (a variant, e.g. ``'VoVNet-39'``) for a checkpoint that names
    none: whatever is written loads exactly into that network."""
    import io

    import torch

    from mmbackbones import CheckpointError, build_backbone, convert_weights
    from mmbackbones.checkpoint import extract_state_dict
    from mmbackbones.engine.atomic_io import atomic_write
    from mmbackbones.loader import load_source, read_source, recorded_kwargs
    from mmbackbones.models import NUM_LEVELS
    source = read_source(src)
    levels = ('stem.', ) + tuple(f'stage{i}.' for i in range(2, NUM_LEVELS + 1))
    under = [k[len(prefix):] for k in extract_state_dict(source.checkpoint)
             if k.startswith(prefix)]
    ours = bool(under) and all(k.startswith(levels) for k in under)
    if backbone:
        model = build_backbone(backbone)
    elif source.recorded_network:
        type_, kwargs = recorded_kwargs(source.recorded_network)
        model = build_backbone(type_, **kwargs)
    elif ours:
        raise CheckpointError(f'{src} does not name its network (no meta.backbone: written '
                              f'before mmbackbones recorded it); pass --backbone, e.g. '
                              f"--backbone VoVNet-39")
    else:
        try:  # a public checkpoint in another layout (timm, vovnet-detectron2, ...)
            converted = convert_weights(source.checkpoint)
        except CheckpointError as err:
            raise CheckpointError(f'{src} is neither an mmbackbones checkpoint (keys under '
                                  f'{prefix!r}) nor a known public layout: {err}') from None
        print(f'{src}: {converted.source} layout; in MODEL.MMBACKBONES use TYPE '
              f'{converted.type} and ARGS {converted.kwargs}')
        model = converted.build()
    load_source(model, source, prefix=prefix if ours else None)
    weights = {D2_PREFIX[arch] + k: v for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({'model': weights, '__author__': 'mmbackbones', 'matching_heuristics': False},
               buffer)
    atomic_write(buffer.getvalue(), dst)
    return len(weights)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument('--arch', choices=sorted(D2_PREFIX), default='fpn')
    parser.add_argument('--prefix', default='backbone.',
                        help="prefix of the backbone in the source ('backbone.')")
    parser.add_argument('--backbone', help='the network, for a checkpoint that does not name '
                                           "it (e.g. 'VoVNet-39')")
    args = parser.parse_args(argv)
    count = convert(args.src, args.dst, args.arch, args.prefix, args.backbone)
    print(f'wrote {count} backbone tensors to {args.dst} under {D2_PREFIX[args.arch]!r}')


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
