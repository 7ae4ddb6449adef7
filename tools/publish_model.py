#!/usr/bin/env python
"""Publish a training checkpoint: weights only (EMA weights if the run used EMA),
loadable with torch's safe weights_only loading, with a hash in the name.

    python tools/publish_model.py work_dirs/x/epoch_100.pth releases/vovnet39_imagenet.pth
    -> releases/vovnet39_imagenet-1a2b3c4d.pth
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('in_file', help='training checkpoint')
    parser.add_argument('out_file', nargs='?', help='output name (the hash is appended); '
                        'default: next to the input')
    args = parser.parse_args(argv)
    from mmbackbones.publish import publish_checkpoint
    path = publish_checkpoint(args.in_file, args.out_file)
    print(path)
    return path


if __name__ == '__main__':
    main()
