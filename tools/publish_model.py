#!/usr/bin/env python
"""Publish a training checkpoint: weights only (EMA weights if the run used EMA),
loadable with plain ``torch.load(weights_only=True)``, with a hash in the name.

    python tools/publish_model.py work_dirs/vovnet39_imagenet/epoch_100.pth \
        checkpoints/vovnet39_imagenet.pth
    -> checkpoints/vovnet39_imagenet-1a2b3c4d.pth, and checkpoints/vovnet39_imagenet.pth
       becomes a symlink to it: the path the detection configs name.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import _quiet  # noqa: F401,E402  (the stack's noise, before MMEngine loads)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('in_file', help='training checkpoint')
    parser.add_argument('out_file', nargs='?', help='output name: the release is written '
                        'with the hash appended and this name links to it; default: the '
                        'input\'s name with the hash, no link')
    args = parser.parse_args(argv)
    from mmbackbones.publish import publish_checkpoint
    path = publish_checkpoint(args.in_file, args.out_file)
    print(path)
    return path


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
