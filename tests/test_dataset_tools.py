"""The ImageNet validation sorter, the dataset checker and the embedded demo data."""
import os
import shutil

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


@pytest.fixture
def damaged_folder(tmp_path):
    """Class folders holding an empty file, a text file named .jpg, a truncated
    JPEG, a CMYK JPEG and a PNG named .JPEG, beside good images."""
    import io

    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    root = tmp_path / 'train'
    for cls in ('cls_a', 'cls_b'):
        (root / cls).mkdir(parents=True)

    def photo(mode='RGB', size=(64, 48)):
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        return Image.fromarray(pixels).convert(mode)
    photo().save(root / 'cls_a' / 'good.jpg', quality=90)
    photo().save(root / 'cls_b' / 'good.JPEG', quality=90)
    (root / 'cls_a' / 'empty.jpg').write_bytes(b'')
    (root / 'cls_a' / 'text.jpg').write_text('not an image\n')
    buffer = io.BytesIO()
    photo(size=(256, 256)).save(buffer, 'JPEG', quality=90)
    (root / 'cls_b' / 'truncated.jpg').write_bytes(buffer.getvalue()[:buffer.tell() // 2])
    photo('CMYK').save(root / 'cls_b' / 'cmyk.jpg', quality=90)
    photo().save(root / 'cls_b' / 'png.JPEG', format='PNG')
    return root


def test_check_dataset_reports_and_writes_what_a_config_can_use(damaged_folder, tmp_path):
    out = tmp_path / 'out'
    result = run_tool(['tools/check_dataset.py', str(damaged_folder), '--workers', '2',
                       '--out', str(out)], check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    assert '7 images checked, 3 unreadable' in result.stdout
    for line in ('empty (unreadable): 1', 'not an image (unreadable): 1',
                 'truncated (unreadable): 1', 'cmyk (warning): 1', 'png named jpeg (warning): 1'):
        assert line in result.stdout, line
    report = out / f'{damaged_folder.parent.name}_train'  # a folder per data set
    unreadable = (report / 'unreadable.txt').read_text().split()
    assert sorted(os.path.basename(p) for p in unreadable) == [
        'empty.jpg', 'text.jpg', 'truncated.jpg']
    # the readable list is an MMPretrain ann_file: the dataset then skips the bad files
    from mmpretrain.datasets import CustomDataset
    dataset = CustomDataset(data_root=str(damaged_folder),
                            ann_file=str(report / 'readable_ann.txt'),
                            metainfo=dict(classes=('cls_a', 'cls_b')))
    assert len(dataset) == 4
    assert {os.path.basename(dataset.get_data_info(i)['img_path'])
            for i in range(4)} == {'good.jpg', 'good.JPEG', 'cmyk.jpg', 'png.JPEG'}
    clean = damaged_folder.parent / 'clean'
    (clean / 'cls_a').mkdir(parents=True)
    shutil.copy(damaged_folder / 'cls_a' / 'good.jpg', clean / 'cls_a')
    assert run_tool(['tools/check_dataset.py', str(clean), '--workers', '1',
                     '--out', str(out)]).returncode == 0
    # another data set's report sits in its own folder, not beside this one's files
    assert sorted(os.listdir(out / f'{clean.parent.name}_clean')) == ['readable_ann.txt',
                                                                     'unreadable.txt']
    assert (report / 'readable_ann.txt').read_text().count('\n') == 4


def test_a_short_truncated_jpeg_is_called_truncated(tmp_path):
    """300 bytes of a JPEG: PIL cannot read even its header ('cannot identify
    image file'), and it was classed 'not an image'."""
    import io

    import numpy as np
    from PIL import Image

    from mmbackbones.datasets.check import check_image
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, 'JPEG', quality=90)
    for size in (300, 30):
        path = tmp_path / f'cut{size}.jpg'
        path.write_bytes(buffer.getvalue()[:size])
        assert check_image(str(path)).problems == ('truncated', ), size
    (tmp_path / 'text.jpg').write_text('not an image\n')
    assert check_image(str(tmp_path / 'text.jpg')).problems == ('not an image', )


def test_check_dataset_writes_a_readable_coco_annotation_file(damaged_folder, tmp_path):
    import json
    from mmbackbones.datasets.check import Report, check_images, find_images, write_exclusions
    images = sorted(p.relative_to(damaged_folder).as_posix()
                    for p in damaged_folder.rglob('*') if p.is_file())
    coco = dict(images=[dict(id=i, file_name=name) for i, name in enumerate(images)],
                annotations=[dict(id=i, image_id=i) for i in range(len(images))],
                categories=[])
    ann = tmp_path / 'instances.json'
    ann.write_text(json.dumps(coco))
    report = Report(check_images(find_images(str(damaged_folder)), workers=1, progress=False))
    written = write_exclusions(report, str(tmp_path / 'out'), str(damaged_folder), str(ann))
    readable = json.loads(open(written[-1]).read())
    assert len(readable['images']) == len(readable['annotations']) == len(images) - 3
    assert not {'cls_a/empty.jpg', 'cls_a/text.jpg', 'cls_b/truncated.jpg'} & {
        i['file_name'] for i in readable['images']}


def test_check_dataset_reads_a_coco_annotation_file_and_reports_missing_images(
        damaged_folder, tmp_path, capsys):
    """It walked the folder: an image the annotation file lists but the disk
    lacks went unreported, and stayed in the 'readable' annotation file."""
    import json
    import sys

    from training_utils import ROOT
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    import check_dataset
    listed = ['cls_a/good.jpg', 'cls_b/good.JPEG', 'cls_a/gone.jpg', 'cls_a/empty.jpg']
    coco = dict(images=[dict(id=i, file_name=name) for i, name in enumerate(listed)],
                annotations=[dict(id=i, image_id=i) for i in range(len(listed))],
                categories=[])
    ann = tmp_path / 'instances.json'
    ann.write_text(json.dumps(coco))
    out = tmp_path / 'out'
    status = check_dataset.main([str(damaged_folder), '--ann', str(ann), '--workers', '1',
                                 '--out', str(out)])
    printed = capsys.readouterr().out
    assert status == 1
    assert '4 images checked, 2 unreadable' in printed  # the listed ones, not the folder's
    assert f'missing (unreadable): 1: {damaged_folder / "cls_a" / "gone.jpg"}' in printed
    assert '4 image files in' in printed and 'not listed' in printed
    report = out / f'{damaged_folder.parent.name}_train'
    readable = json.loads((report / 'instances.readable.json').read_text())
    assert [i['file_name'] for i in readable['images']] == listed[:2]
    assert sorted(a['image_id'] for a in readable['annotations']) == [0, 1]
    assert (report / 'unreadable.txt').read_text().split() == [
        str(damaged_folder / 'cls_a' / 'gone.jpg'), str(damaged_folder / 'cls_a' / 'empty.jpg')]
