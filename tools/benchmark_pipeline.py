#!/usr/bin/env python
"""Speed of the recipe's training data pipeline (configs/_base_/imagenet_recipe.py,
as MMPretrain runs it) against torchvision's reference transforms doing the same
augmentations, on the same JPEG photos:

* per stage and per image, in one process with one thread (a data-loader
  worker), sides alternating, medians over the rounds (CPU time of the process,
  robust to other jobs on the machine);
* images/s delivered by a DataLoader (batch 128) with 1 worker and with all
  cores, counting the normalization where each pipeline does it (torchvision:
  per image in the workers; the recipe: per batch in the data preprocessor,
  which runs on the GPU in training and here in the main process).

    python tools/benchmark_pipeline.py [--images 64] [--repeats 7] [--jpeg-dir DIR]

Three sides: the recipe's fast pipeline (the default), its exact pipeline
(MMPretrain's transforms: full decode, ``data_pipeline='exact'``) and
torchvision's reference. All do: decode, RandomResizedCrop 176, horizontal flip,
TrivialAugmentWide, RandomErasing p=0.1, normalization. The photos are
scikit-learn's two sample photos cut to ImageNet's sizes
(:func:`mmbackbones.datasets.photos.write_sample_photos`); ``--jpeg-dir`` takes
real ones (e.g. ImageNet's train folder of one class).
"""
import argparse
import os
import os.path as osp
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from typing import Callable, Dict, List, Tuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
RECIPE = osp.join(ROOT, 'configs', '_base_', 'imagenet_recipe.py')
FAST, EXACT, REFERENCE = 'mmbackbones fast (default)', 'mmbackbones exact', \
    'torchvision reference'
#: the stages of the table, in order; each transform of a side maps to one
STAGES = ('read + decode', 'crop + resize', 'flip', 'TrivialAugment', 'PIL <-> array',
          'erasing', 'to tensor / pack', 'normalization', 'collate')
Stage = Tuple[str, Callable]
#: per-image timing: this process's CPU time, not wall time. The machines this
#: runs on are shared (CI's two cores with other jobs): a process that waits for
#: a core would count the wait; its CPU time does not (it is single-threaded here)
clock = time.process_time


def _recipe():
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmbackbones  # noqa: F401
    init_default_scope('mmpretrain')
    return Config.fromfile(RECIPE)


def mmpretrain_side(cfg, pipeline: list) -> Tuple[List[Stage], Callable, Callable]:
    """``(per-image stages, collate, per-batch normalization)`` of a recipe
    pipeline: the transforms MMPretrain builds from the config, the fast
    loader split into its decode and resize halves to time them apart."""
    import torch
    from mmengine.dataset import pseudo_collate
    from mmpretrain.registry import MODELS, TRANSFORMS

    from mmbackbones.datasets import DecodeRandomResizedCrop
    names = {'LoadImageFromFile': 'read + decode', 'RandomResizedCrop': 'crop + resize',
             'RandomFlip': 'flip', 'NumpyToPIL': 'PIL <-> array', 'PILToNumpy': 'PIL <-> array',
             'RandomErasing': 'erasing', 'PackInputs': 'to tensor / pack'}
    stages = []
    for transform_cfg in pipeline:
        transform = TRANSFORMS.build(transform_cfg)
        kind = transform_cfg['type'].split('.')[-1]
        if isinstance(transform, DecodeRandomResizedCrop):
            def decode(results, t=transform):
                results['_crop'] = t.decode_crop(results)
                return results

            def resize(results, t=transform):
                image, box, ori_shape = results.pop('_crop')
                results.update(img=t.resize_crop(image, box), ori_shape=ori_shape,
                               img_shape=(t.scale, t.scale))
                return results
            stages += [('read + decode', decode), ('crop + resize', resize)]
        elif 'TrivialAugment' in kind:
            stages.append(('TrivialAugment', transform))
        elif 'Flip' in kind:
            stages.append(('flip', transform))
        else:
            stages.append((names[kind], transform))
    preprocessor = MODELS.build(dict(type='ClsDataPreprocessor',
                                     **{k: v for k, v in cfg.data_preprocessor.items()
                                        if k != 'num_classes'}))
    if torch.cuda.is_available():  # where training normalizes (copy to it included)
        preprocessor.cuda()

    def collate(samples):
        batch = pseudo_collate(samples)
        batch['inputs'] = torch.stack(batch['inputs'])
        return batch

    def normalize(batch):  # BGR -> RGB, float, (x - mean) / std, as in training
        out = preprocessor(batch, training=False)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out
    return stages, collate, normalize


def reference_side() -> Tuple[List[Stage], Callable, Callable]:
    """torchvision's classification reference recipe, transform by transform."""
    import torch
    from PIL import Image
    from torch.utils.data import default_collate
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    def decode(path):
        with open(path, 'rb') as f:
            return Image.open(f).convert('RGB')  # torchvision's default_loader
    to_tensor = T.Compose([T.PILToTensor(), T.ConvertImageDtype(torch.float)])
    stages = [
        ('read + decode', decode),
        ('crop + resize', T.RandomResizedCrop(176, interpolation=InterpolationMode.BILINEAR,
                                              antialias=True)),
        ('flip', T.RandomHorizontalFlip(0.5)),
        ('TrivialAugment', T.TrivialAugmentWide(interpolation=InterpolationMode.BILINEAR)),
        ('to tensor / pack', to_tensor),
        ('normalization', T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])),
        ('erasing', T.RandomErasing(p=0.1)),
    ]
    return stages, default_collate, None


def _input(path: str, side: str):
    """What a side's first stage takes: the path, or MMEngine's results dict."""
    return path if side == REFERENCE else dict(img_path=path, gt_label=0)


def _output(data, side: str):
    """What a side's dataset yields: (image, label), or the packed dict."""
    return (data, 0) if side == REFERENCE else data


def _run(stages: List[Stage], path: str, side: str):
    data = _input(path, side)
    for _, stage in stages:
        data = stage(data)
    return data


def per_image(sides: Dict[str, tuple], paths: List[str], repeats: int, batch: int):
    """Median ms per image of each side's whole pipeline, of each stage (timed
    in a separate pass), and of its per-batch work (divided by the batch)."""
    totals = {name: [] for name in sides}
    stage_times = {name: defaultdict(list) for name in sides}
    for _ in range(repeats):
        for name, (stages, collate, normalize) in sides.items():
            start = clock()
            for path in paths:
                _run(stages, path, name)
            totals[name].append((clock() - start) / len(paths))
            spent = defaultdict(float)
            samples = []
            for path in paths:
                data = _input(path, name)
                for stage, fn in stages:
                    start = clock()
                    data = fn(data)
                    spent[stage] += clock() - start
                samples.append(_output(data, name))
            for stage, seconds in spent.items():
                stage_times[name][stage].append(seconds / len(paths))
            # per-batch work on a full batch (the photos repeated)
            full = (samples * (batch // len(samples) + 1))[:batch]
            start = clock()
            collated = collate(full)
            stage_times[name]['collate'].append((clock() - start) / batch)
            if normalize is not None:
                start = clock()
                normalize(collated)
                stage_times[name]['normalization'].append(
                    (clock() - start) / batch)
    median = statistics.median
    return ({n: median(v) for n, v in totals.items()},
            {n: {s: median(v) for s, v in st.items()} for n, st in stage_times.items()})


class _Photos:
    """A map-style dataset of ``count`` samples cycling over ``paths``."""

    def __init__(self, stages, paths, side, count):
        self.stages, self.paths, self.side, self.count = stages, paths, side, count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return _output(_run(self.stages, self.paths[index % len(self.paths)], self.side),
                       self.side)


def _worker_init(_):
    import cv2
    import torch
    torch.set_num_threads(1)
    cv2.setNumThreads(0)


def loader_rates(sides: Dict[str, tuple], paths: List[str], batch: int, batches: int,
                 workers: List[int], rounds: int) -> Dict[Tuple[str, int], float]:
    """Images/s a DataLoader delivers, normalized batches included, worker
    start-up included (fresh workers each epoch, as the recipe runs them)."""
    from torch.utils.data import DataLoader
    rates = defaultdict(list)
    for count in workers:
        for _ in range(rounds):
            for name, (stages, collate, normalize) in sides.items():
                loader = DataLoader(_Photos(stages, paths, name, batch * batches),
                                    batch_size=batch, num_workers=count, collate_fn=collate,
                                    worker_init_fn=_worker_init, persistent_workers=False)
                start = time.perf_counter()
                for collated in loader:
                    if normalize is not None:
                        normalize(collated)
                rates[(name, count)].append(batch * batches / (time.perf_counter() - start))
    return {key: statistics.median(values) for key, values in rates.items()}


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--images', type=int, default=64, help='photos (or files of --jpeg-dir)')
    parser.add_argument('--repeats', type=int, default=7, help='alternating rounds per image')
    parser.add_argument('--jpeg-dir', help='use these JPEGs instead of the sample photos')
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--loader-batches', type=int, default=4,
                        help='batches per DataLoader run (0: no DataLoader runs)')
    parser.add_argument('--loader-rounds', type=int, default=3)
    args = parser.parse_args(argv)
    import cv2
    import torch
    torch.set_num_threads(1)
    cv2.setNumThreads(0)
    cfg = _recipe()
    sides = {FAST: mmpretrain_side(cfg, cfg.train_pipeline),
             EXACT: mmpretrain_side(cfg, cfg.exact_train_pipeline),
             REFERENCE: reference_side()}
    with tempfile.TemporaryDirectory() as tmp:
        if args.jpeg_dir:
            paths = sorted(osp.join(args.jpeg_dir, f) for f in os.listdir(args.jpeg_dir))
            paths = paths[:args.images]
            source = f'{len(paths)} JPEGs of {args.jpeg_dir}'
        else:
            from mmbackbones.datasets.photos import write_sample_photos
            paths = write_sample_photos(tmp, args.images)
            source = f'{len(paths)} photos (scikit-learn sample photos cut to ImageNet sizes)'
        for name, (stages, _, _) in sides.items():  # warm-up, and the outputs agree
            out = _run(stages, paths[0], name)
            shape = tuple(out.shape if name == REFERENCE else out['inputs'].shape)
            assert shape == (3, 176, 176), (name, shape)
        totals, stages = per_image(sides, paths, args.repeats, args.batch)
        workers = sorted({1, os.cpu_count() or 1})
        rates = loader_rates(sides, paths, args.batch, args.loader_batches, workers,
                             args.loader_rounds) if args.loader_batches else {}
    print(f'# {source}; {args.repeats} alternating rounds, 1 thread, CPU time; medians')
    print('\nms per image, per stage (per-batch stages divided by the batch of '
          f'{args.batch}; the recipe normalizes on the device in training):\n')
    print('| stage | ' + ' | '.join(sides) + ' |')
    print('|---|' + '---|' * len(sides))
    for stage in STAGES:
        cells = [f'{stages[n][stage] * 1e3:.3f}' if stage in stages[n] else '-' for n in sides]
        print(f'| {stage} | ' + ' | '.join(cells) + ' |')
    in_worker = {n: totals[n] for n in sides}
    print('| **per worker** (whole pipeline, timed apart) | ' + ' | '.join(
        f'**{in_worker[n] * 1e3:.3f}**' for n in sides) + ' |')
    ratio = in_worker[REFERENCE] / in_worker[FAST]
    # the per-batch work counted as CPU work too (as on a CPU run): collate, and
    # the recipe's normalization (torchvision's is per image, in the worker already)
    with_norm = {n: in_worker[n] + stages[n]['collate'] +
                 (stages[n]['normalization'] if sides[n][2] is not None else 0)
                 for n in sides}
    print('| per image with collate and normalization on the CPU | ' + ' | '.join(
        f'{with_norm[n] * 1e3:.3f}' for n in sides) + ' |')
    print(f'\nratio per worker (images/s, fast / torchvision): {ratio:.3f}')
    print(f'ratio per worker (images/s, exact / torchvision): '
          f'{in_worker[REFERENCE] / in_worker[EXACT]:.3f}')
    print(f'ratio with collate and normalization on the CPU (fast / torchvision): '
          f'{with_norm[REFERENCE] / with_norm[FAST]:.3f}')
    if rates:
        print(f'\nDataLoader, batch {args.batch}, {args.batch * args.loader_batches} images '
              f'per run, {args.loader_rounds} rounds, worker start-up and normalization '
              'included (images/s):\n')
        print('| workers | ' + ' | '.join(sides) + ' | fast / torchvision |')
        print('|---|' + '---|' * (len(sides) + 1))
        for count in workers:
            print(f'| {count} | ' + ' | '.join(f'{rates[(n, count)]:.0f}' for n in sides)
                  + f' | {rates[(FAST, count)] / rates[(REFERENCE, count)]:.3f} |')
    return ratio


if __name__ == '__main__':
    from mmbackbones.cli import run
    run(main)
