"""Real photos at ImageNet's sizes, with no download: cut from the two photos
that ship with scikit-learn (``load_sample_images``: 640 x 427), for the
pipeline benchmark and tests. Synthetic colour fields decode and compress
unlike photos; these have real edges, textures and chroma."""
import os
import os.path as osp
from typing import List

import numpy as np
from PIL import Image

#: (landscape aspect ratio, weight): ImageNet's photos are mostly 4:3 and 3:2
ASPECTS = ((4 / 3, 0.6), (3 / 2, 0.2), (1.0, 0.1), (5 / 4, 0.1))


def write_sample_photos(folder: str, count: int, seed: int = 0) -> List[str]:
    """Write ``count`` JPEGs ``folder/NNNN.JPEG`` and return their paths: each a
    random region of one of the two photos, resized to ImageNet's size spread
    (long side 500 for most, 250-500 for a fifth; landscape 4 in 5; aspect
    4:3, 3:2, 1:1 or 5:4), JPEG quality 75-95, 4:2:0 chroma like most cameras."""
    from sklearn.datasets import load_sample_images
    sources = load_sample_images().images
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    ratios, weights = zip(*ASPECTS)
    paths = []
    for index in range(count):
        source = sources[index % len(sources)]
        long_side = 500 if rng.random() < 0.8 else int(rng.integers(250, 501))
        aspect = ratios[rng.choice(len(ratios), p=np.array(weights) / sum(weights))]
        if rng.random() < 0.2:  # portrait
            aspect = 1 / aspect
        width = long_side if aspect >= 1 else int(round(long_side * aspect))
        height = int(round(width / aspect))
        # the largest region of the source with that aspect, times 0.5-1
        src_h, src_w = source.shape[:2]
        region_w = min(src_w, src_h * aspect) * rng.uniform(0.5, 1.0)
        region_h = region_w / aspect
        x = rng.uniform(0, src_w - region_w)
        y = rng.uniform(0, src_h - region_h)
        photo = Image.fromarray(source).resize(
            (width, height), Image.BICUBIC, box=(x, y, x + region_w, y + region_h))
        path = osp.join(folder, f'{index:04d}.JPEG')
        photo.save(path, quality=int(rng.integers(75, 96)))
        paths.append(path)
    return paths
