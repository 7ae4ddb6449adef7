"""A detector on photos (``tools/detect.py``): which model ``--model`` names,
the images to run, MMDetection's inference (or a ``tools/deploy.py``
deployment's), and the results drawn and written as JSON.

Every weight enters through :func:`mmbackbones.load_weights`, strictly, and
every box is in the pixels of the image as the config's pipeline decodes it
(``mmcv.imread``: EXIF orientation applied), which is what is drawn on.
"""
import colorsys
import glob
import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .datasets.check import IMAGE_EXTENSIONS, check_image
from .export.files import written_whole

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: where the configs ``--model`` takes live (relative to the repository)
CONFIG_FOLDERS = ('configs/detection', 'configs/demo')
JSON_FILE = 'detections.json'

#: one image's detections in its own pixels: ``bboxes`` (N, 4) x1 y1 x2 y2,
#: ``scores`` (N,), ``labels`` (N,)
Detections = Dict[str, np.ndarray]


@dataclass
class ModelChoice:
    """What ``--model`` resolved to: a config, and the weights that go with it
    where the name carries them (a named detector's public file)."""
    config: str
    weights: Optional[str] = None


def detector_configs() -> List[str]:
    """The repository's MMDetection configs, as paths relative to it."""
    found = []
    for folder in CONFIG_FOLDERS:
        for path in sorted(glob.glob(osp.join(ROOT, folder, '*.py'))):
            with open(path) as f:
                if 'mmdet::' in f.read():  # a detector's base (the demo's classifier has none)
                    found.append(osp.relpath(path, ROOT))
    return found


def resolve_model(model: str) -> ModelChoice:
    """``--model``: an MMDetection config file, else a name from the weights
    catalog that names a detector (a :class:`FileNotFoundError` or
    :class:`ValueError` listing what it takes otherwise)."""
    from .weights.catalog import is_name, lookup, strip_scheme
    if osp.isfile(model):
        if not model.endswith('.py'):
            raise ValueError(f'--model {model!r} is a file but not a config (.py); '
                             f'--model takes {_accepted()}')
        return ModelChoice(model)
    if is_name(model):
        entry = lookup(model)
        # the catalog names ImageNet backbones only: a detector entry would
        # resolve here to its config and its own file
        raise ValueError(f'--model {strip_scheme(model)!r} names ImageNet weights of a '
                         f'{entry.type} backbone, not a detector; --model takes '
                         f'{_accepted()}')
    if model.endswith('.py'):
        raise FileNotFoundError(f'--model {model!r}: no such config file; --model takes '
                                f'{_accepted()}')
    raise ValueError(f'--model {model!r} is neither a config file nor a named detector; '
                     f'--model takes {_accepted()}')


def _accepted() -> str:
    by_folder = {}
    for path in detector_configs():
        folder, name = osp.split(path)
        by_folder.setdefault(folder, []).append(name)
    listed = '; '.join(f'{folder}/: {", ".join(names)}' for folder, names in by_folder.items())
    return (f'an MMDetection config file ({listed}); named detectors: none yet (the '
            f'weights catalog names backbones only: tools/convert_weights.py --list)')


def find_images(inputs: Sequence[str]) -> List[str]:
    """The image files of ``inputs`` (files, or folders: their images, sorted,
    not recursive), each decoded once: a missing, empty or unreadable one is an
    error naming it, before any model is built."""
    images = []
    for given in inputs:
        if osp.isdir(given):
            found = sorted(osp.join(given, name) for name in os.listdir(given)
                           if name.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise FileNotFoundError(f'{given}: a folder without images '
                                        f'({", ".join(IMAGE_EXTENSIONS)})')
            images.extend(found)
        elif osp.isfile(given):
            images.append(given)
        else:
            raise FileNotFoundError(f'{given}: no such image file or folder')
    for path in images:
        check = check_image(path, min_size=1)
        if check.unreadable:
            raise ValueError(f'{path}: not a readable image ({", ".join(check.problems)}: '
                             f'{check.detail or "no data"})')
    return images


def check_score_thr(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f'--score-thr {value}: a score threshold is in [0, 1]')
    return value


# -- class names -------------------------------------------------------------------
def class_names(cfg, meta: Optional[dict] = None) -> List[str]:
    """The detector's class names: the checkpoint's ``meta.dataset_meta`` (what
    the Runner trained on), else the config's test set (its ``metainfo``, else
    its dataset type's own), else none (labels are then shown as indices)."""
    meta = meta or {}
    dataset_meta = meta.get('dataset_meta') or {}
    # MMDetection 2's checkpoints kept them as meta.CLASSES
    classes = dataset_meta.get('classes') or dataset_meta.get('CLASSES') or meta.get('CLASSES')
    if classes:
        return [str(c) for c in classes]
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    classes = (dataset.get('metainfo') or {}).get('classes')
    if not classes and dataset.get('type'):
        from mmdet.registry import DATASETS
        dataset_type = DATASETS.get(dataset['type'].split('.')[-1])
        classes = getattr(dataset_type, 'METAINFO', {}).get('classes')
    return [str(c) for c in classes or ()]


def class_name(classes: Sequence[str], label: int) -> str:
    return classes[label] if 0 <= label < len(classes) else str(label)


# -- detectors ---------------------------------------------------------------------
#: one image path in, its detections out
Detect = Callable[[str], Detections]


def pytorch_detector(config: str, weights: str,
                     device: str = 'cpu') -> Tuple[Detect, List[str]]:
    """``config``'s detector with ``weights`` loaded strictly
    (:func:`mmbackbones.load_weights`; no pretrained file of the config is
    read), run by MMDetection's ``inference_detector``. Returns ``(run, class
    names)``. (Not ``init_detector``: it loads weights its own, lenient way.)"""
    from mmdet.apis import inference_detector
    from mmdet.models.detectors import BaseDetector
    from mmengine.config import Config
    from mmengine.model.utils import revert_sync_batchnorm

    from .export.detector import build_detector, inference_pipeline
    from .input_check import check_config, read_meta
    from .loader import load_weights
    cfg = Config.fromfile(config)
    model_cfg, scope = cfg.get('model'), cfg.get('default_scope', 'mmdet')
    if scope != 'mmdet' or not isinstance(model_cfg, dict) or \
            not isinstance(model_cfg.get('backbone'), dict):
        kind = (model_cfg or {}).get('type') if isinstance(model_cfg, dict) else None
        raise ValueError(f'{config} is not an MMDetection detector config (scope {scope!r}, '
                         f'model {kind!r}); --model takes {_accepted()}')
    check_config(cfg, weights)  # the preprocessor feeds the input the weights expect
    detector, cfg = build_detector(cfg)
    if not isinstance(detector, BaseDetector):
        raise ValueError(f'{config} builds a {type(detector).__name__}, not an MMDetection '
                         f'detector')
    load_weights(detector, weights)
    detector = revert_sync_batchnorm(detector).to(device)  # as init_detector does
    detector.cfg = cfg  # what inference_detector reads
    classes = class_names(cfg, read_meta(weights))
    detector.dataset_meta = dict(classes=tuple(classes))
    pipeline = inference_pipeline(cfg)

    def run(path: str) -> Detections:
        found = inference_detector(detector, path, test_pipeline=pipeline).pred_instances
        return dict(bboxes=found.bboxes.cpu().numpy(), scores=found.scores.cpu().numpy(),
                    labels=found.labels.cpu().numpy())
    return run, classes


def deployed_detector(folder: str) -> Tuple[Detect, List[str]]:
    """A ``tools/deploy.py`` folder in its runtime: its own config prepares the
    image, and the boxes come back in the image's pixels
    (:class:`~mmbackbones.export.detector.DeployedDetector`)."""
    from .export.detector import META_FILE, DeployedDetector
    if not osp.isfile(osp.join(folder, META_FILE)):
        raise FileNotFoundError(f'--deployment {folder}: not a deployment folder (no '
                                f'{META_FILE}; tools/deploy.py writes one)')
    deployed = DeployedDetector(folder)
    classes = list(deployed.meta.get('classes') or []) or class_names(deployed.cfg)

    def run(path: str) -> Detections:
        found = deployed([path])[0]
        return {key: value.numpy() for key, value in found.items()}
    return run, classes


# -- results -----------------------------------------------------------------------
def record(path: str, image: np.ndarray, found: Detections, classes: Sequence[str],
           score_thr: float) -> dict:
    """One image's entry of the JSON: its size and the detections scoring at
    least ``score_thr``, best first."""
    keep = np.flatnonzero(found['scores'] >= score_thr)
    keep = keep[np.argsort(-found['scores'][keep], kind='stable')]
    detections = [dict(bbox=[float(v) for v in found['bboxes'][i]],
                       score=float(found['scores'][i]), label=int(found['labels'][i]),
                       **{'class': class_name(classes, int(found['labels'][i]))})
                  for i in keep]
    return dict(file=path, width=int(image.shape[1]), height=int(image.shape[0]),
                detections=detections)


def colour(label: int) -> Tuple[int, int, int]:
    """A bright colour per class, neighbours far apart on the hue circle."""
    red, green, blue = colorsys.hsv_to_rgb((label * 0.618034) % 1.0, 0.85, 1.0)
    return int(red * 255), int(green * 255), int(blue * 255)


def draw(image: np.ndarray, detections: Sequence[dict]) -> Image.Image:
    """``image`` (RGB) with each detection's box and ``class score`` drawn."""
    canvas = Image.fromarray(image)
    pen = ImageDraw.Draw(canvas)
    short = min(canvas.size)
    width = max(1, round(short / 250))
    font = ImageFont.load_default(size=max(9, round(short / 30)))
    for det in reversed(detections):  # the best on top
        x1, y1, x2, y2 = det['bbox']
        x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)  # PIL's order
        fill = colour(det['label'])
        pen.rectangle((x1, y1, x2, y2), outline=fill, width=width)
        text = f'{det["class"]} {det["score"]:.2f}'
        left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
        height = bottom - top + 2
        # above the box, or inside it where the box touches the top
        y = y1 - height if y1 - height >= 0 else y1
        pen.rectangle((x1, y, x1 + right - left + 2, y + height), fill=fill)
        pen.text((x1 + 1, y + 1 - top), text, fill=(0, 0, 0), font=font)
    return canvas


def output_names(images: Sequence[str]) -> List[str]:
    """A PNG name per image: its own stem, numbered where two stems clash."""
    names, taken = [], set()
    for path in images:
        stem, name, count = osp.splitext(osp.basename(path))[0], '', 0
        while not name or name in taken:
            name = f'{stem}.png' if count == 0 else f'{stem}_{count}.png'
            count += 1
        taken.add(name)
        names.append(name)
    return names


def detect(images: Sequence[str], run: Detect, classes: Sequence[str], out: str,
           score_thr: float = 0.3, about: Optional[dict] = None,
           log: Callable[[str], None] = print) -> dict:
    """Run ``run`` on each of ``images``, write ``out/<stem>.png`` (the
    detections drawn) and ``out/detections.json``; returns what the JSON holds."""
    import mmcv
    os.makedirs(out, exist_ok=True)
    results = []
    for path, name in zip(images, output_names(images)):
        image = mmcv.imread(path, channel_order='rgb')  # the pixels the pipeline decodes
        entry = record(path, image, run(path), classes, score_thr)
        entry['drawn'] = name
        with written_whole(osp.join(out, name), suffix='.png') as tmp:
            draw(image, entry['detections']).save(tmp)
        results.append(entry)
        log(f'[detect] {path}: {len(entry["detections"])} detections -> '
            f'{osp.join(out, name)}')
    summary = dict(about or {}, score_thr=score_thr, classes=list(classes), images=results)
    with written_whole(osp.join(out, JSON_FILE)) as tmp:
        with open(tmp, 'w') as f:
            json.dump(summary, f, indent=1)
    log(f'[detect] {len(results)} images: {osp.join(out, JSON_FILE)}')
    return summary


__all__ = ['ModelChoice', 'resolve_model', 'find_images', 'class_names', 'pytorch_detector',
           'deployed_detector', 'detect', 'draw']
