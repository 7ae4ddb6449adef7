"""The ImageNet validation sorter and the embedded demo data."""
import os

import pytest

from mmbackbones.datasets.imagenet import sort_val_images
from training_utils import run_tool

HEADER = 'ImageId,PredictionString\n'


@pytest.fixture
def val_tree(tmp_path):
    val = tmp_path / 'val'
    val.mkdir()
    rows = []
    for i, wnid in enumerate(['n01440764', 'n01443537', 'n01440764', 'n01484850']):
        name = f'ILSVRC2012_val_{i:08d}'
        (val / f'{name}.JPEG').write_bytes(f'image {i}'.encode())
        rows.append(f'{name},{wnid} 10 20 30 40 {wnid} 1 2 3 4')
    rows.append('ILSVRC2012_val_00000099,n01484850 1 1 2 2')  # listed, not on disk
    (val / 'ILSVRC2012_val_00000050.JPEG').write_bytes(b'unlisted')
    csv = tmp_path / 'LOC_val_solution.csv'
    csv.write_text(HEADER + '\n'.join(rows) + '\n')
    return str(csv), val


def snapshot(folder):
    return sorted((os.path.relpath(os.path.join(d, f), folder),
                   open(os.path.join(d, f), 'rb').read())
                  for d, _, files in os.walk(folder) for f in files)


def test_dry_run_changes_nothing(val_tree):
    csv, val = val_tree
    before = snapshot(val)
    report = sort_val_images(csv, str(val), dry_run=True)
    assert len(report.moved) == 4 and snapshot(val) == before


def test_sorts_reports_and_is_idempotent(val_tree):
    csv, val = val_tree
    report = sort_val_images(csv, str(val))
    assert len(report.moved) == 4
    assert report.missing == ['ILSVRC2012_val_00000099.JPEG']
    assert report.unlisted == ['ILSVRC2012_val_00000050.JPEG']
    assert (val / 'n01440764' / 'ILSVRC2012_val_00000002.JPEG').read_bytes() == b'image 2'
    after = snapshot(val)
    again = sort_val_images(csv, str(val))
    assert not again.moved and len(again.already_sorted) == 4
    assert snapshot(val) == after


def test_never_overwrites(val_tree):
    csv, val = val_tree
    (val / 'n01440764').mkdir()
    (val / 'n01440764' / 'ILSVRC2012_val_00000000.JPEG').write_bytes(b'other copy')
    report = sort_val_images(csv, str(val))
    assert report.conflicts == ['ILSVRC2012_val_00000000.JPEG']
    assert (val / 'ILSVRC2012_val_00000000.JPEG').read_bytes() == b'image 0'
    assert (val / 'n01440764' / 'ILSVRC2012_val_00000000.JPEG').read_bytes() == b'other copy'


def test_command_line(val_tree):
    csv, val = val_tree
    result = run_tool(['tools/dataset_converters/imagenet_val_to_folders.py',
                       '--val_solution_path', csv, '--val_image_dir', str(val)], check=False)
    assert result.returncode == 1  # one listed image is missing
    assert 'moved 4' in result.stdout and 'ILSVRC2012_val_00000099' in result.stdout
    with pytest.raises(ValueError, match='ImageId,PredictionString'):
        bad = val / 'bad.csv'
        bad.write_text('a,b\n1,2\n')
        sort_val_images(str(bad), str(val))


def test_digits_demo_data(digits_root):
    from PIL import Image

    from mmbackbones.datasets import CLASSES, make_digits_classification
    counts = {split: sum(len(files) for _, _, files in os.walk(os.path.join(digits_root, split)))
              for split in ('train', 'val')}
    assert counts == {'train': 1437, 'val': 360}  # all 1,797 digits, fixed split
    assert sorted(os.listdir(os.path.join(digits_root, 'train'))) == list(CLASSES)
    image = Image.open(os.path.join(digits_root, 'val', 'digit0', '0000.jpg'))
    assert image.mode == 'RGB' and image.size == (64, 64)
    before = snapshot(digits_root)
    assert make_digits_classification(digits_root) == counts  # idempotent
    assert snapshot(digits_root) == before
