#!/usr/bin/env python
"""Convert an mmbackbones MMPretrain checkpoint to Detectron2's key layout, for
``DetectionCheckpointer`` / ``MODEL.WEIGHTS``:

    python tools/convert_to_detectron2.py checkpoints/vovnet39_imagenet.pth \\
        checkpoints/vovnet39_d2.pth --arch fpn

Public checkpoints that :func:`mmbackbones.weights.convert_weights` knows (timm,
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


def convert(src: str, dst: str, arch: str = 'fpn', prefix: str = 'backbone.') -> int:
    import io

    import torch

    from mmbackbones.checkpoint import (CheckpointError, extract_state_dict,
                                        load_checkpoint)
    from mmbackbones.engine.atomic_io import atomic_write
    from mmbackbones.weights import convert_weights
    from mmbackbones.models import NUM_LEVELS
    state = extract_state_dict(load_checkpoint(src))
    ours = {k[len(prefix):]: v for k, v in state.items()
            if k.startswith(prefix) and isinstance(v, torch.Tensor)}
    levels = ('stem.', ) + tuple(f'stage{i}.' for i in range(2, NUM_LEVELS + 1))
    if not ours or not all(k.startswith(levels) for k in ours):
        try:  # a public checkpoint in another layout (timm, vovnet-detectron2, ...)
            converted = convert_weights(state)
        except CheckpointError as err:
            raise CheckpointError(f'{src} is neither an mmbackbones checkpoint (keys under '
                                  f'{prefix!r}) nor a known public layout: {err}') from None
        print(f'{src}: {converted.source} layout; in MODEL.MMBACKBONES use TYPE '
              f'{converted.type} and ARGS {converted.kwargs}')
        ours = converted.state_dict
    weights = {D2_PREFIX[arch] + k: v for k, v in ours.items()}
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
    args = parser.parse_args(argv)
    count = convert(args.src, args.dst, args.arch, args.prefix)
    print(f'wrote {count} backbone tensors to {args.dst} under {D2_PREFIX[args.arch]!r}')


if __name__ == '__main__':
    main()
