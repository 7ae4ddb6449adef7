"""Decode every image of a dataset once, before a long run does: what
``tools/check_dataset.py`` reports, and the exclusion files it writes."""
import json
import os
import os.path as osp
from dataclasses import dataclass, field
from multiprocessing import Pool
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from PIL import Image, ImageFile

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
#: problems that make an image unusable; the others are reported as warnings
UNREADABLE = ('missing', 'empty', 'not an image', 'truncated')
WARNINGS = ('cmyk', 'grayscale', 'png named jpeg', 'tiny')


@dataclass
class ImageCheck:
    path: str
    problems: Tuple[str, ...] = ()
    detail: str = ''

    @property
    def unreadable(self) -> bool:
        return any(p in UNREADABLE for p in self.problems)


#: how image files start, and the marker a complete one ends with (None: no such marker)
SIGNATURES = {b'\xff\xd8\xff': b'\xff\xd9', b'\x89PNG\r\n\x1a\n': b'IEND\xaeB`\x82',
              b'GIF8': b';', b'BM': None, b'RIFF': None}


def cut_short(path: str) -> bool:
    """An image file that starts as one but lacks its end: a partial copy or
    download (so small that PIL cannot even read the header of some)."""
    with open(path, 'rb') as f:
        head = f.read(16)
        f.seek(max(0, osp.getsize(path) - 16))
        tail = f.read()
    for start, end in SIGNATURES.items():
        if head.startswith(start):
            return end is not None and end not in tail
    return False


def check_image(path: str, min_size: int = 32) -> ImageCheck:
    """Open and fully decode ``path``; name what is wrong with it."""
    if not osp.isfile(path):  # listed in an annotation file, absent from the disk
        return ImageCheck(path, ('missing', ), 'no such file')
    if osp.getsize(path) == 0:
        return ImageCheck(path, ('empty', ))
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as image:
            fmt, mode, size = image.format, image.mode, image.size
            image.load()
    except OSError as err:
        said = str(err).replace(path, '')  # PIL names the file, which may say anything
        truncated = 'truncated' in said or 'broken data stream' in said or cut_short(path)
        return ImageCheck(path, ('truncated' if truncated else 'not an image', ), str(err))
    except Exception as err:  # any decoder error: the file cannot train
        return ImageCheck(path, ('not an image', ), f'{type(err).__name__}: {err}')
    problems = []
    if mode == 'CMYK':
        problems.append('cmyk')
    elif mode in ('L', 'LA', 'I', 'I;16', '1'):
        problems.append('grayscale')
    if fmt == 'PNG' and path.lower().endswith(('.jpg', '.jpeg')):
        problems.append('png named jpeg')
    if min(size) < min_size:
        problems.append('tiny')
    return ImageCheck(path, tuple(problems), f'{fmt} {mode} {size[0]}x{size[1]}')


def coco_images(ann_file: str, image_root: str) -> List[str]:
    """The path of every image a COCO annotation file lists, under
    ``image_root``, in the file's order: the images a dataset reads, whether or
    not they are on the disk."""
    with open(ann_file) as f:
        images = json.load(f).get('images') or []
    return [osp.join(image_root, i['file_name']) for i in images]


def find_images(folder: str) -> List[str]:
    """Every file with an image extension below ``folder``, sorted."""
    found = []
    for root, _, files in os.walk(folder):
        found += [osp.join(root, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found)


def _check(args: Tuple[str, int]) -> ImageCheck:
    return check_image(*args)


def check_images(paths: Sequence[str], workers: int = 4, min_size: int = 32,
                 progress: bool = True) -> List[ImageCheck]:
    """:func:`check_image` on every path, in ``workers`` processes, with a
    progress bar; results in the order of ``paths``."""
    from mmengine.utils import ProgressBar
    bar = ProgressBar(len(paths)) if progress and paths else None
    jobs = [(p, min_size) for p in paths]
    if workers <= 1:
        results = []
        for job in jobs:
            results.append(_check(job))
            bar and bar.update()
        return results
    with Pool(workers) as pool:
        results = []
        for result in pool.imap(_check, jobs, chunksize=16):
            results.append(result)
            bar and bar.update()
    return results


@dataclass
class Report:
    checks: List[ImageCheck]
    by_problem: Dict[str, List[str]] = field(default_factory=dict)

    def __post_init__(self):
        for check in self.checks:
            for problem in check.problems:
                self.by_problem.setdefault(problem, []).append(check.path)

    @property
    def unreadable(self) -> List[str]:
        return [c.path for c in self.checks if c.unreadable]

    def summary(self) -> str:
        lines = [f'{len(self.checks)} images checked, {len(self.unreadable)} unreadable']
        for problem in UNREADABLE + WARNINGS:
            paths = self.by_problem.get(problem, [])
            if paths:
                kind = 'unreadable' if problem in UNREADABLE else 'warning'
                shown = ', '.join(paths[:5]) + (', ...' if len(paths) > 5 else '')
                lines.append(f'  {problem} ({kind}): {len(paths)}: {shown}')
        return '\n'.join(lines)


def write_exclusions(report: Report, out_dir: str, image_root: Optional[str] = None,
                     coco_ann: Optional[str] = None) -> List[str]:
    """``unreadable.txt`` (one path a line); for a class-folder set also
    ``readable_ann.txt`` (MMPretrain's ``ann_file`` format, ``path label``, labels
    in sorted folder order, unreadable files left out); for a COCO set the
    annotation file without the unreadable images (``<name>.readable.json``).
    Returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):  # an earlier run's files would read as this one's
        if name in ('unreadable.txt', 'readable_ann.txt') or name.endswith('.readable.json'):
            os.remove(osp.join(out_dir, name))
    written = [osp.join(out_dir, 'unreadable.txt')]
    with open(written[0], 'w') as f:
        f.writelines(p + '\n' for p in report.unreadable)
    bad = set(report.unreadable)
    if coco_ann:
        with open(coco_ann) as f:
            coco = json.load(f)
        root = image_root or ''
        drop = {img['id'] for img in coco['images']
                if osp.join(root, img['file_name']) in bad}
        coco['images'] = [i for i in coco['images'] if i['id'] not in drop]
        coco['annotations'] = [a for a in coco.get('annotations', [])
                               if a['image_id'] not in drop]
        name = osp.splitext(osp.basename(coco_ann))[0] + '.readable.json'
        written.append(osp.join(out_dir, name))
        with open(written[-1], 'w') as f:
            json.dump(coco, f)
    elif image_root:
        classes = sorted(d for d in os.listdir(image_root)
                         if osp.isdir(osp.join(image_root, d)))
        if classes:
            written.append(osp.join(out_dir, 'readable_ann.txt'))
            with open(written[-1], 'w') as f:
                for check in report.checks:
                    rel = osp.relpath(check.path, image_root)
                    if check.path not in bad and rel.split(os.sep)[0] in classes:
                        f.write(f'{rel} {classes.index(rel.split(os.sep)[0])}\n')
    return written


def images_of(folders: Iterable[str]) -> List[str]:
    paths = []
    for folder in folders:
        paths += find_images(folder)
    return paths
