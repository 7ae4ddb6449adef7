#!/usr/bin/env python
"""Per-worker speed of the recipe's training data pipeline (as MMPretrain runs it,
from configs/_base_/imagenet_recipe.py) against torchvision's reference
transforms doing the same work, on the same JPEG files, in one process with one
thread (as a data-loader worker), alternating rounds; medians reported.

    python tools/benchmark_pipeline.py [--images 48] [--repeats 7] [--jpeg-dir DIR]

Both do: decode, RandomResizedCrop 176, horizontal flip, TrivialAugmentWide,
RandomErasing p=0.1, normalization. (MMPretrain normalizes the batch in its data
preprocessor; here each image is normalized the same way so the work is equal.)
"""
import argparse
import os
import os.path as osp
import statistics
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
RECIPE = osp.join(ROOT, 'configs', '_base_', 'imagenet_recipe.py')


def make_jpegs(folder: str, count: int, seed: int = 0):
    """ImageNet-sized (500 x 375) photos-like JPEGs: smooth colour fields plus noise."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((500, 375), Image.BICUBIC), np.int16)
        image = np.clip(image + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)
        path = osp.join(folder, f'{i:04d}.JPEG')
        Image.fromarray(image).save(path, quality=90)
        paths.append(path)
    return paths


def ours():
    import torch
    from mmengine.config import Config
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope

    import mmbackbones  # noqa: F401
    cfg = Config.fromfile(RECIPE)
    init_default_scope('mmpretrain')
    pipeline = Compose(cfg.train_pipeline)
    pre = cfg.data_preprocessor
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)

    def run(path):
        packed = pipeline(dict(img_path=path, gt_label=0))
        return (packed['inputs'].flip(0).float() - mean) / std  # BGR -> RGB, normalize
    return run


def torchvision_reference():
    import torch
    from PIL import Image
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode
    transform = T.Compose([
        T.RandomResizedCrop(176, interpolation=InterpolationMode.BILINEAR, antialias=True),
        T.RandomHorizontalFlip(0.5),
        T.TrivialAugmentWide(interpolation=InterpolationMode.BILINEAR),
        T.PILToTensor(),
        T.ConvertImageDtype(torch.float),
        T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        T.RandomErasing(p=0.1),
    ])

    def run(path):
        with open(path, 'rb') as f:
            image = Image.open(f).convert('RGB')  # torchvision's default_loader
        return transform(image)
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--images', type=int, default=48)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--jpeg-dir', help='use these JPEGs instead of generated ones')
    args = parser.parse_args(argv)
    import cv2
    import torch
    torch.set_num_threads(1)
    cv2.setNumThreads(0)
    with tempfile.TemporaryDirectory() as tmp:
        if args.jpeg_dir:
            paths = sorted(osp.join(args.jpeg_dir, f) for f in os.listdir(args.jpeg_dir))
            paths = paths[:args.images]
        else:
            paths = make_jpegs(tmp, args.images)
        pipelines = {'mmbackbones (MMPretrain)': ours(), 'torchvision reference': torchvision_reference()}
        for run in pipelines.values():  # warm-up, and the outputs agree in shape
            assert tuple(run(paths[0]).shape) == (3, 176, 176)
        times = {name: [] for name in pipelines}
        for _ in range(args.repeats):
            for name, run in pipelines.items():
                start = time.perf_counter()
                for path in paths:
                    run(path)
                times[name].append((time.perf_counter() - start) / len(paths))
    print(f'# {len(paths)} JPEGs, {args.repeats} alternating rounds, 1 thread')
    print('| pipeline | median ms/image | min..max | images/s |')
    print('|---|---|---|---|')
    medians = {}
    for name, values in times.items():
        medians[name] = statistics.median(values)
        print(f'| {name} | {medians[name] * 1e3:.2f} | {min(values) * 1e3:.2f}..'
              f'{max(values) * 1e3:.2f} | {1 / medians[name]:.0f} |')
    ours_t, ref_t = medians.values()
    print(f'ratio (images/s, ours / torchvision): {ref_t / ours_t:.3f}')
    return ref_t / ours_t


if __name__ == '__main__':
    main()
