"""ImageNet validation images into class folders, from Kaggle's LOC_val_solution.csv
(the seed's ``scripts/imagenet.py`` step), safely and repeatably."""
import csv
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List

IMAGE_SUFFIX = '.JPEG'


@dataclass
class ValSortReport:
    moved: List[str] = field(default_factory=list)
    already_sorted: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)      # listed, found nowhere
    conflicts: List[str] = field(default_factory=list)    # in both places: left alone
    unlisted: List[str] = field(default_factory=list)     # images the CSV does not name

    def summary(self, dry_run: bool) -> str:
        verb = 'would move' if dry_run else 'moved'
        lines = [f'{verb} {len(self.moved)}, already in their class folder '
                 f'{len(self.already_sorted)}, missing {len(self.missing)}, '
                 f'in both places (left alone) {len(self.conflicts)}, '
                 f'not in the CSV {len(self.unlisted)}']
        for name, items in (('missing', self.missing), ('conflicts', self.conflicts),
                            ('not in the CSV', self.unlisted)):
            if items:
                lines.append(f'  {name}: {", ".join(items[:10])}'
                             + (' ...' if len(items) > 10 else ''))
        return '\n'.join(lines)


def read_val_solution(csv_path: str) -> Dict[str, str]:
    """``{image id: wnid}``; the class is the first token of PredictionString."""
    labels = {}
    with open(csv_path, newline='') as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {'ImageId', 'PredictionString'} <= set(
                reader.fieldnames):
            raise ValueError(f'{csv_path} is not LOC_val_solution.csv: expected columns '
                             f'ImageId,PredictionString, got {reader.fieldnames}')
        for row in reader:
            tokens = row['PredictionString'].split()
            if not tokens:
                raise ValueError(f'{csv_path}: image {row["ImageId"]} has no label')
            labels[row['ImageId']] = tokens[0]
    return labels


def sort_val_images(csv_path: str, val_dir: str, dry_run: bool = False) -> ValSortReport:
    """Move ``val_dir/<id>.JPEG`` to ``val_dir/<wnid>/<id>.JPEG``. Never deletes or
    overwrites an image; a second run changes nothing."""
    if not osp.isdir(val_dir):
        raise FileNotFoundError(f'validation image folder {val_dir} does not exist')
    labels = read_val_solution(csv_path)
    report = ValSortReport()
    for image_id, wnid in sorted(labels.items()):
        name = image_id + IMAGE_SUFFIX
        src, dst = osp.join(val_dir, name), osp.join(val_dir, wnid, name)
        at_src, at_dst = osp.isfile(src), osp.isfile(dst)
        if at_src and at_dst:
            report.conflicts.append(name)
        elif at_dst:
            report.already_sorted.append(name)
        elif not at_src:
            report.missing.append(name)
        else:
            report.moved.append(name)
            if not dry_run:
                os.makedirs(osp.dirname(dst), exist_ok=True)
                os.link(src, dst)  # fails rather than overwrite ...
                os.unlink(src)     # ... and only then drops the old name
    report.unlisted = sorted(
        f for f in os.listdir(val_dir)
        if osp.isfile(osp.join(val_dir, f)) and f.endswith(IMAGE_SUFFIX)
        and f[:-len(IMAGE_SUFFIX)] not in labels)
    return report
