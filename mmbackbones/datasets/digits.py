"""Embedded demo data made from scikit-learn's digits (1,797 real 8x8 handwritten
digits that ship with scikit-learn), so the main job runs with no download."""
import json
import os
import os.path as osp
import shutil
import tempfile
from contextlib import contextmanager
from typing import Dict, List

import numpy as np
from PIL import Image

CLASSES = tuple(f'digit{i}' for i in range(10))
VAL_EVERY = 5  # every 5th digit (in scikit-learn's order) is validation: fixed split
MARKER = '.complete'


def digit_images(size: int):
    """``(images uint8 N x size x size x 3, labels)``: white ink on black, upscaled."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = []
    for pixels in digits.images:  # values 0..16
        gray = Image.fromarray(np.uint8(np.round(pixels * (255 / 16))), mode='L')
        images.append(np.asarray(gray.resize((size, size), Image.BICUBIC).convert('RGB')))
    return np.stack(images), digits.target


def split_of(index: int) -> str:
    return 'val' if index % VAL_EVERY == 0 else 'train'


@contextmanager
def _build_once(root: str):
    """Yield a temporary folder to fill, then mark it complete and move it to
    ``root`` as a whole, replacing whatever incomplete tree was there."""
    parent = osp.dirname(osp.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix='.' + osp.basename(root) + '-')
    try:
        yield tmp
        open(osp.join(tmp, MARKER), 'w').close()
        if osp.exists(root):
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _count_files(root: str, split: str) -> int:
    return sum(len(files) for _, _, files in os.walk(osp.join(root, split)))


def make_digits_classification(root: str, size: int = 64) -> Dict[str, int]:
    """Write ``root/{train,val}/digitK/NNNN.jpg`` (ImageNet's folder layout) once.

    Idempotent: a complete tree (marked by ``root/.complete``) is left alone; an
    incomplete one is rebuilt in a temporary folder and moved into place.
    Returns the number of images per split.
    """
    if not osp.exists(osp.join(root, MARKER)):
        images, labels = digit_images(size)
        with _build_once(root) as tmp:
            for index, (image, label) in enumerate(zip(images, labels)):
                folder = osp.join(tmp, split_of(index), CLASSES[label])
                os.makedirs(folder, exist_ok=True)
                Image.fromarray(image).save(osp.join(folder, f'{index:04d}.jpg'), quality=95)
    return {split: _count_files(root, split) for split in ('train', 'val')}


DET_CANVAS = 128
DET_IMAGES = {'train': 320, 'val': 80}


def _paste_digits(rng: np.random.Generator, pool: List[int], images: np.ndarray,
                  labels: np.ndarray, canvas_size: int):
    canvas = np.zeros((canvas_size, canvas_size, 3), np.uint8)
    boxes, classes, taken = [], [], []
    for _ in range(rng.integers(2, 6)):
        for _attempt in range(20):
            size = int(rng.integers(24, 57))
            x, y = rng.integers(0, canvas_size - size, 2)
            if all(x + size <= a or a + s <= x or y + size <= b or b + s <= y
                   for a, b, s in taken):
                break
        else:
            continue
        index = pool[rng.integers(len(pool))]
        patch = np.asarray(Image.fromarray(images[index]).resize((size, size),
                                                                 Image.BICUBIC))
        region = canvas[y:y + size, x:x + size]
        np.maximum(region, patch, out=region)
        ink_y, ink_x = np.nonzero(patch.max(axis=2) > 64)
        boxes.append([float(x + ink_x.min()), float(y + ink_y.min()),
                      float(ink_x.max() - ink_x.min() + 1), float(ink_y.max() - ink_y.min() + 1)])
        classes.append(int(labels[index]))
        taken.append((x, y, size))
    return canvas, boxes, classes


def make_digits_detection(root: str, seed: int = 0) -> Dict[str, int]:
    """Write a COCO-format detection set once: ``root/{train,val}/NNNN.jpg`` (128 px
    canvases with 2-5 digits pasted at random positions and sizes) and
    ``root/annotations/{train,val}.json``. Digits of the classification train
    split only appear in train canvases, val digits only in val. Idempotent."""
    if not osp.exists(osp.join(root, MARKER)):
        images, labels = digit_images(64)
        rng = np.random.default_rng(seed)
        with _build_once(root) as tmp:
            os.makedirs(osp.join(tmp, 'annotations'))
            for split, count in DET_IMAGES.items():
                pool = [i for i in range(len(labels)) if split_of(i) == split]
                os.makedirs(osp.join(tmp, split))
                coco = dict(images=[], annotations=[], categories=[
                    dict(id=i + 1, name=name) for i, name in enumerate(CLASSES)])
                for image_id in range(count):
                    canvas, boxes, classes = _paste_digits(rng, pool, images, labels,
                                                           DET_CANVAS)
                    name = f'{image_id:04d}.jpg'
                    Image.fromarray(canvas).save(osp.join(tmp, split, name), quality=95)
                    coco['images'].append(dict(id=image_id, file_name=name,
                                               width=DET_CANVAS, height=DET_CANVAS))
                    for box, cls in zip(boxes, classes):
                        coco['annotations'].append(dict(
                            id=len(coco['annotations']) + 1, image_id=image_id,
                            category_id=cls + 1, bbox=box, area=box[2] * box[3], iscrowd=0))
                with open(osp.join(tmp, 'annotations', f'{split}.json'), 'w') as f:
                    json.dump(coco, f)
    return {split: _count_files(root, split) for split in DET_IMAGES}
