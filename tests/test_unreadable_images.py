"""An unreadable image never ends a training run silently: skipped with a warning
naming it (MMEngine's refetch draws another sample), counted across data-loader
workers, and the run stops past a limit; evaluation stops naming the file."""
import json
import os.path as osp
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

import mmbackbones  # noqa: F401  (registers the transform and the hook)
from mmbackbones.datasets import LoadImageOrSkip, UnreadableImageError
from training_utils import ROOT, run_tool, write_small_config


@pytest.fixture
def broken(tmp_path):
    """An empty file and a text file named .jpg."""
    empty, text = tmp_path / 'empty.jpg', tmp_path / 'text.jpg'
    empty.write_bytes(b'')
    text.write_text('not an image\n')
    return str(empty), str(text)


def test_training_skips_and_records_evaluation_names_the_file(broken, tmp_path):
    record = tmp_path / 'unreadable.txt'
    skip = LoadImageOrSkip(skip=True, record=str(record))
    for path in broken:
        assert skip(dict(img_path=path)) is None
    assert record.read_text().split() == list(broken)
    strict = LoadImageOrSkip()
    for path in broken:
        with pytest.raises(UnreadableImageError, match=f'cannot read image {path}'):
            strict(dict(img_path=path))
    good = tmp_path / 'good.jpg'
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(good)
    assert skip(dict(img_path=str(good)))['img'].shape == (8, 8, 3)


class _RaisingLoader(LoadImageOrSkip):
    """A loader whose decode raises ``error``: a bug (KeyError) or a bad file (ValueError)."""

    def __init__(self, error: Exception, **kwargs):
        super().__init__(**kwargs)
        self.error = error

    def load(self, results):
        raise self.error


def test_a_bug_in_a_loader_is_not_skipped_as_an_unreadable_image(tmp_path):
    record = tmp_path / 'unreadable.txt'
    with pytest.raises(KeyError, match='img_shape'):
        _RaisingLoader(KeyError('img_shape'), skip=True, record=str(record))(
            dict(img_path='a.jpg'))
    assert not record.exists()
    assert _RaisingLoader(ValueError('truncated'), skip=True, record=str(record))(
        dict(img_path='b.jpg')) is None
    assert record.read_text().split() == ['b.jpg']


def test_mmdetection_coco_dataset_draws_another_image(broken, tmp_path):
    from mmdet.datasets import CocoDataset
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / 'good.jpg')
    images = ['empty.jpg', 'good.jpg']
    coco = dict(images=[dict(id=i, file_name=n, width=32, height=32)
                        for i, n in enumerate(images)],
                annotations=[dict(id=i + 1, image_id=i, category_id=1, bbox=[2, 2, 10, 10],
                                  area=100, iscrowd=0) for i in range(2)],
                categories=[dict(id=1, name='thing')])
    (tmp_path / 'ann.json').write_text(json.dumps(coco))
    pipeline = [dict(type='mmbackbones.LoadImageOrSkip', skip=True,
                     record=str(tmp_path / 'unreadable.txt')),
                dict(type='LoadAnnotations', with_bbox=True), dict(type='PackDetInputs')]
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = CocoDataset(data_root=str(tmp_path), ann_file='ann.json',
                              data_prefix=dict(img=''), pipeline=pipeline,
                              metainfo=dict(classes=('thing', )), filter_cfg=None)
        sample = dataset[0]  # the empty file: another image comes instead
    assert sample['data_samples'].img_path.endswith('good.jpg')
    assert (tmp_path / 'unreadable.txt').read_text().strip().endswith('empty.jpg')


@pytest.mark.slow  # trains with the tools in subprocesses
def test_training_survives_bad_files_and_stops_past_the_limit(digits_root, tmp_path):
    data = tmp_path / 'digits'
    shutil.copytree(digits_root, data)
    first = sorted((data / 'train' / 'digit0').iterdir())[:2]  # inside the run's 64 images
    first[0].write_bytes(b'')
    first[1].write_text('not an image\n')
    config = write_small_config(tmp_path, str(data), images=64, batch=16, epochs=2)
    work = tmp_path / 'work'
    result = run_tool(['tools/train.py', config, '--work-dir', str(work),
                       '--cfg-options', 'unreadable_images.max_fraction=0.05'])  # 3 of 64
    assert f'skipping unreadable image {first[0]}' in result.stdout + result.stderr
    assert set((work / 'unreadable_images.txt').read_text().split()) == {str(p) for p in first}
    assert (work / 'epoch_2.pth').is_file()
    strict_data = tmp_path / 'strict_digits'  # 48 of the run's 64 images unreadable:
    shutil.copytree(data, strict_data)         # the first batch of 16 holds some
    for i, path in enumerate(sorted((strict_data / 'train' / 'digit0').iterdir())[:64]):
        if i % 4:
            path.write_bytes(b'')
    (tmp_path / 'strict_cfg').mkdir()
    strict = write_small_config(tmp_path / 'strict_cfg', str(strict_data), images=64,
                                batch=16, epochs=2)
    # the failures in this process: the CLI's way of reporting them is test_messages'
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import test as test_tool
    import train as train_tool
    # the default limit, 0.1 % of the set; reached at once, not after a whole epoch
    with pytest.raises(RuntimeError, match=r'training images are unreadable, more than the '
                                           r'limit of 0\.10% of 64 \(stopped after iteration 1, '
                                           r'epoch 1\)'):
        train_tool.main([strict, '--work-dir', str(tmp_path / 'strict')])
    (data / 'val' / 'digit0' / sorted((data / 'val' / 'digit0').iterdir())[0].name) \
        .write_bytes(b'')
    with pytest.raises(UnreadableImageError, match='cannot read image'):
        test_tool.main([config, str(work / 'epoch_2.pth'), '--work-dir', str(tmp_path / 'test')])


def _classifier_checkpoint(config: str, path) -> str:
    """Random weights of the config's classifier, as a Runner checkpoint."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        torch.manual_seed(0)
        model = MODELS.build(Config.fromfile(config).model)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path)


def test_skip_in_eval_leaves_the_image_out_and_scores_nothing_in_its_place(digits_root,
                                                                            tmp_path):
    """MMPretrain scored another image, with its label, in an unreadable one's place:
    the metrics with the image skipped must equal those of the set without it."""
    import sys
    from training_utils import ROOT
    sys.path.insert(0, f'{ROOT}/tools')
    import test as test_tool
    skipped, removed = tmp_path / 'skipped', tmp_path / 'removed'
    for copy in (skipped, removed):
        shutil.copytree(digits_root, copy)
    victim = sorted((skipped / 'val' / 'digit3').iterdir())[0]
    victim.write_bytes(b'')
    (removed / 'val' / 'digit3' / victim.name).unlink()
    config = write_small_config(tmp_path, str(skipped), images=64, batch=16, epochs=1,
                                validate=True)
    ckpt = _classifier_checkpoint(config, tmp_path / 'random.pth')

    def top1(root, *options):
        metrics = test_tool.main([config, ckpt, '--work-dir', str(tmp_path / root.name),
                                  '--cfg-options', f'test_dataloader.dataset.data_root={root}',
                                  'test_dataloader.dataset.indices=None', *options])
        return metrics['accuracy/top1']
    with pytest.raises(UnreadableImageError, match=rf'cannot read image .*{victim.name}'):
        top1(skipped)  # the default: an error naming the file
    assert top1(skipped, 'unreadable_images.skip_in_eval=True') == top1(removed)
    work = tmp_path / 'skipped'
    assert (work / 'unreadable_eval_images.txt').read_text().split() == [str(victim)]
    assert not (work / 'unreadable_images.txt').exists()  # not the training record


def test_skip_in_eval_on_a_coco_set_filters_the_dataset_and_the_evaluator(det_root,
                                                                          tmp_path):
    """MMDetection crashed ('Test time pipeline should not get None data_sample')."""
    from mmengine.config import Config
    from mmbackbones.engine import prepare_config
    from training_utils import ROOT
    data = tmp_path / 'det'
    shutil.copytree(det_root, data)
    images = json.loads((data / 'annotations' / 'val.json').read_text())['images']
    victim = data / 'val' / images[0]['file_name']
    victim.write_bytes(b'')
    cfg = Config.fromfile(f'{ROOT}/configs/demo/retinanet_vovnet19slim_digits.py')
    cfg.merge_from_dict({'data_root': f'{data}/',
                         'unreadable_images': dict(skip_in_eval=True)})
    cfg.work_dir = str(tmp_path / 'work')
    cfg = prepare_config(cfg, data_root_before='data/digits_det/', check_memory=False)
    readable = cfg.val_dataloader.dataset.ann_file
    assert readable == cfg.val_evaluator.ann_file == cfg.test_evaluator.ann_file
    kept = json.loads(open(readable).read())
    assert len(kept['images']) == len(images) - 1
    assert images[0]['id'] not in {a['image_id'] for a in kept['annotations']}
    assert (tmp_path / 'work' / 'unreadable_eval_images.txt').read_text().split() == [
        str(victim)]
    assert 'mmbackbones.UnreadableEvalImagesHook' in [h['type'] for h in cfg.custom_hooks]
    from mmengine.runner import Runner
    cfg.train_dataloader = cfg.train_cfg = cfg.optim_wrapper = cfg.param_scheduler = None
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader.dataset.indices = 8
    metrics = Runner.from_cfg(cfg).test()  # evaluates without the image, no crash
    assert 'coco/bbox_mAP' in metrics


def test_skip_in_eval_leaves_out_an_annotated_image_missing_from_disk(det_root, tmp_path):
    """A COCO set listing an image that is not on the disk crashed the check
    (FileNotFoundError in a worker): a missing image is an unreadable one."""
    from mmengine.config import Config
    from mmbackbones.engine import prepare_config
    data = tmp_path / 'det'
    shutil.copytree(det_root, data)
    images = json.loads((data / 'annotations' / 'val.json').read_text())['images']
    victim = data / 'val' / images[1]['file_name']
    victim.unlink()
    cfg = Config.fromfile(f'{ROOT}/configs/demo/retinanet_vovnet19slim_digits.py')
    cfg.merge_from_dict({'data_root': f'{data}/',
                         'unreadable_images': dict(skip_in_eval=True)})
    cfg.work_dir = str(tmp_path / 'work')
    cfg = prepare_config(cfg, data_root_before='data/digits_det/', check_memory=False)
    kept = json.loads(open(cfg.val_evaluator.ann_file).read())
    assert cfg.val_dataloader.dataset.ann_file == cfg.val_evaluator.ann_file
    assert [i['id'] for i in kept['images']] == [i['id'] for i in images if i is not images[1]]
    assert images[1]['id'] not in {a['image_id'] for a in kept['annotations']}
    assert (tmp_path / 'work' / 'unreadable_eval_images.txt').read_text().split() == [
        str(victim)]
