"""The recipe's fast data pipeline does the augmentations of the exact one (and of
torchvision's reference recipe): the same crop boxes for a seeded generator,
images close to a full decode + resize, the same flip, TrivialAugmentWide and
RandomErasing, BGR uint8 out, the same mean colour; fallbacks for CMYK,
grayscale, PNG and EXIF-rotated files; unreadable files skipped in training and
named in evaluation. Photos: scikit-learn's two sample photos cut to ImageNet's
sizes (mmbackbones.datasets.photos)."""
import copy
import io
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

import mmbackbones  # noqa: F401
from mmbackbones.datasets import (DecodeRandomResizedCrop, DecodeResizeCenterCrop,
                                  UnreadableImageError, random_resized_crop_box)
from mmbackbones.datasets.fast_loading import decode, decode_scaled, read_header
from mmbackbones.datasets.photos import write_sample_photos
from mmbackbones.datasets.transforms import _MemoizedTrivialAugmentWide

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
RECIPE = osp.join(ROOT, 'configs', '_base_', 'imagenet_recipe.py')
#: PSNR (dB) of the fast crops against torchvision's full decode + Pillow resize
#: with the same box. Full-scale crops differ by rounding only (torch's vs
#: Pillow's kernel; OpenCV's vs Pillow's libjpeg-turbo build): measured over
#: seeds 0-19 of the 24 photos below, median 76, min 54.8 dB (438 crops). Crops
#: decoded at 1/2 or 1/4 scale (DCT scaling instead of Pillow's antialiasing
#: filter for the first halvings): median 41.7, min 33.3 dB (42 crops). The
#: bounds are those minima rounded down, as docs/pretraining.md states them.
FULL_SCALE_PSNR, REDUCED_PSNR = 54.5, 33.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float('inf') if mse == 0 else 10 * np.log10(255 ** 2 / mse)


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    return write_sample_photos(str(tmp_path_factory.mktemp('photos')), 24)


@pytest.fixture(scope='module')
def recipe():
    return Config.fromfile(RECIPE)


def build(pipeline):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return Compose(copy.deepcopy(pipeline))


@pytest.mark.parametrize('scale, ratio', [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.25, 1.0), (0.5, 2.0))])
def test_crop_boxes_equal_torchvisions_for_a_seeded_generator(scale, ratio):
    # ImageNet-like sizes, tiny ones, and elongated ones where no draw fits and
    # both fall back to the central crop
    sizes = [(500, 375), (375, 500), (500, 333), (64, 64), (177, 176), (1000, 40), (30, 900)]
    for width, height in sizes:
        for seed in range(40):
            torch.manual_seed(seed)
            expected = T.RandomResizedCrop.get_params(Image.new('L', (width, height)),
                                                      list(scale), list(ratio))
            torch.manual_seed(seed)
            assert random_resized_crop_box(width, height, scale, ratio) == tuple(expected)
            # an explicit generator draws what the global one would from that seed
            generator = torch.Generator().manual_seed(seed)
            assert random_resized_crop_box(width, height, scale, ratio,
                                           generator=generator) == tuple(expected)


def test_crops_close_to_full_decode_and_resize(photos):
    """Same seed, same box as torchvision's RandomResizedCrop on the full decode;
    the pixels within the PSNR bounds above (full scale and reduced scale)."""
    transform = DecodeRandomResizedCrop(scale=176, to_pil=True)
    reference = T.RandomResizedCrop(176, interpolation=InterpolationMode.BILINEAR,
                                    antialias=True)
    measured = {'full': [], 'reduced': []}
    for seed in range(3):
        for path in photos:
            torch.manual_seed(seed)
            image, box, ori_shape = transform.decode_crop(dict(img_path=path))
            ours = transform.resize_crop(image, box)
            torch.manual_seed(seed)
            with Image.open(path) as full:
                expected = reference(full.convert('RGB'))
                assert ori_shape == (full.height, full.width)
            assert isinstance(ours, Image.Image) and ours.mode == 'RGB'
            assert ours.size == (176, 176)
            reduced = image.shape[:2] != ori_shape
            measured['reduced' if reduced else 'full'].append(
                psnr(np.asarray(ours), np.asarray(expected)))
    assert len(measured['reduced']) >= 3, 'the photos should exercise the DCT scaling'
    assert min(measured['full']) >= FULL_SCALE_PSNR, measured['full']
    assert min(measured['reduced']) >= REDUCED_PSNR, measured['reduced']


def test_decoder_gives_opencvs_pixels_at_every_scale(photos, tmp_path):
    """simplejpeg decodes exactly what mmcv's LoadImageFromFile (OpenCV) does,
    baseline and progressive JPEGs, with or without an EXIF block."""
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}
    progressive, upright = str(tmp_path / 'progressive.jpg'), str(tmp_path / 'upright.jpg')
    with Image.open(photos[0]) as image:
        image.save(progressive, quality=85, progressive=True)
        exif = image.getexif()
        exif[0x0112] = 1  # upright: still decoded at reduced scales
        image.save(upright, quality=85, exif=exif.tobytes())
    for path in [*photos[:6], progressive, upright]:
        with open(path, 'rb') as f:
            data = f.read()
        width, height, scalable = read_header(data)
        assert scalable and Image.open(path).size == (width, height)
        for factor, flag in flags.items():
            expected = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
            np.testing.assert_array_equal(decode_scaled(data, width, height, factor), expected)
            np.testing.assert_array_equal(decode_scaled(data, width, height, factor, rgb=True),
                                          expected[..., ::-1])


def test_validation_equals_resize_edge_and_center_crop(photos, tmp_path, recipe):
    large = tmp_path / 'large.JPEG'  # short edge >= 2 x 232: decoded at 1/2
    Image.open(photos[0]).resize((800, 600), Image.BICUBIC).save(large, quality=90)
    exact = build(recipe.exact_test_pipeline[:-1])
    fast = build(recipe.test_pipeline[:-1])
    for path in [*photos[:8], str(large)]:
        ours, expected = fast(dict(img_path=path)), exact(dict(img_path=path))
        assert ours['img'].shape == expected['img'].shape == (224, 224, 3)
        assert ours['img'].dtype == np.uint8 and ours['ori_shape'] == expected['ori_shape']
        bound = REDUCED_PSNR if path == str(large) else FULL_SCALE_PSNR
        assert psnr(ours['img'], expected['img']) >= bound, path


def special_files(folder, photo):
    """A CMYK JPEG, a grayscale JPEG, a PNG, a JPEG rotated by EXIF."""
    rgb = Image.open(photo).convert('RGB')
    paths = {}
    paths['cmyk'] = osp.join(folder, 'cmyk.jpg')
    rgb.convert('CMYK').save(paths['cmyk'], quality=90)
    paths['gray'] = osp.join(folder, 'gray.jpg')
    rgb.convert('L').save(paths['gray'], quality=90)
    paths['png'] = osp.join(folder, 'photo.png')
    rgb.save(paths['png'])
    exif = rgb.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    paths['exif'] = osp.join(folder, 'rotated.jpg')
    rgb.save(paths['exif'], quality=90, exif=exif.tobytes())
    return paths


def test_cmyk_grayscale_png_and_exif_fall_back_to_opencvs_full_decode(photos, tmp_path):
    """Decoded as mmcv decodes them (OpenCV, EXIF orientation applied), cropped
    with torchvision's box on that image."""
    transform = DecodeRandomResizedCrop(scale=176)
    validation = DecodeResizeCenterCrop(resize=232, crop_size=224)
    files = special_files(str(tmp_path), photos[1])
    for kind, path in files.items():
        with open(path, 'rb') as f:
            data = f.read()
        assert not read_header(data)[2], f'{kind} must not take the DCT-scaled path'
        full = decode(data)  # OpenCV, as LoadImageFromFile
        height, width = full.shape[:2]
        torch.manual_seed(0)
        ours = transform(dict(img_path=path))
        assert ours['img'].shape == (176, 176, 3) and ours['ori_shape'] == (height, width)
        torch.manual_seed(0)
        top, left, h, w = T.RandomResizedCrop.get_params(torch.empty(3, height, width),
                                                         [0.08, 1.0], [3 / 4, 4 / 3])
        expected = np.asarray(Image.fromarray(full).resize(
            (176, 176), Image.BILINEAR, box=(left, top, left + w, top + h)))
        assert psnr(ours['img'], expected) >= FULL_SCALE_PSNR, kind
        assert validation(dict(img_path=path))['img'].shape == (224, 224, 3)
    with open(files['exif'], 'rb') as f:  # the EXIF rotation swapped the sides
        assert decode(f.read()).shape[:2] == Image.open(photos[1]).size


@pytest.fixture
def unreadable(tmp_path):
    empty, text, cut = tmp_path / 'empty.jpg', tmp_path / 'text.jpg', tmp_path / 'cut.jpg'
    empty.write_bytes(b'')
    text.write_text('not an image\n')
    buffer = io.BytesIO()
    Image.new('RGB', (300, 200), 'red').save(buffer, 'JPEG')
    cut.write_bytes(buffer.getvalue()[:200])  # the header and nothing decodable
    return [str(empty), str(text), str(cut)]


@pytest.mark.parametrize('cls, args', [(DecodeRandomResizedCrop, dict(scale=176)),
                                       (DecodeResizeCenterCrop, dict(resize=232, crop_size=224))])
def test_unreadable_files_skipped_in_training_named_in_evaluation(cls, args, unreadable,
                                                                  tmp_path):
    record = tmp_path / 'unreadable.txt'
    skipping = cls(skip=True, record=str(record), **args)
    for path in unreadable:
        assert skipping(dict(img_path=path)) is None
    assert record.read_text().split() == unreadable
    strict = cls(**args)
    for path in unreadable:
        with pytest.raises(UnreadableImageError, match=f'cannot read image {path}'):
            strict(dict(img_path=path))


def test_the_tools_configure_the_fast_loaders_and_can_select_the_exact_pipeline(recipe,
                                                                                tmp_path):
    from mmbackbones.engine.launch import guard_image_loading, select_data_pipeline
    cfg = copy.deepcopy(recipe)
    cfg.work_dir = str(tmp_path)
    select_data_pipeline(cfg)  # 'fast': unchanged
    guard_image_loading(cfg)
    train = cfg.train_dataloader.dataset.pipeline[0]
    val = cfg.val_dataloader.dataset.pipeline[0]
    assert train['type'] == 'mmbackbones.DecodeRandomResizedCrop' and train['skip'] is True
    assert train['record'] == osp.join(str(tmp_path), 'unreadable_images.txt')
    assert val['type'] == 'mmbackbones.DecodeResizeCenterCrop' and val['skip'] is False
    assert any(h['type'] == 'mmbackbones.UnreadableImagesHook' for h in cfg.custom_hooks)
    exact = copy.deepcopy(recipe)
    exact.work_dir = str(tmp_path)
    exact.data_pipeline = 'exact'
    select_data_pipeline(exact)
    guard_image_loading(exact)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        pipeline = exact[loader].dataset.pipeline
        assert pipeline[0]['type'] == 'mmbackbones.LoadImageOrSkip'
        expected = recipe.exact_train_pipeline if loader == 'train_dataloader' \
            else recipe.exact_test_pipeline
        assert [t['type'] for t in pipeline[1:]] == [t['type'] for t in expected[1:]]
    exact.data_pipeline = 'quick'
    with pytest.raises(ValueError, match="data_pipeline must be 'fast'"):
        select_data_pipeline(exact)


def test_trivial_augment_is_torchvisions_image_for_image(photos):
    ours = _MemoizedTrivialAugmentWide(interpolation=InterpolationMode.BILINEAR)
    theirs = T.TrivialAugmentWide(interpolation=InterpolationMode.BILINEAR)
    # the same operations and magnitude bins
    space, expected = ours._augmentation_space(31), theirs._augmentation_space(31)
    assert list(space) == list(expected)
    for name, (magnitudes, signed) in expected.items():
        torch.testing.assert_close(space[name][0], magnitudes)
        assert space[name][1] == signed
    images = [Image.open(p).convert('RGB').resize((176, 176)) for p in photos[:8]]
    for seed in range(12):  # 96 draws: every one of the 14 operations
        torch.manual_seed(seed)
        a = [np.asarray(ours(image)) for image in images]
        torch.manual_seed(seed)
        b = [np.asarray(theirs(image)) for image in images]
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_the_other_augmentations_are_the_exact_pipelines(recipe):
    fast, exact = recipe.train_pipeline, recipe.exact_train_pipeline
    assert [t['type'] for t in fast] == [
        'mmbackbones.DecodeRandomResizedCrop', 'torchvision/RandomHorizontalFlip',
        'mmbackbones.TrivialAugmentWide', 'PILToNumpy', 'RandomErasing', 'PackInputs']
    crop, flip, augment = fast[0], fast[1], fast[2]
    assert crop.scale == exact[1].scale == 176 and crop.interpolation == 'bilinear'
    # torchvision's RandomResizedCrop ranges (MMPretrain's defaults in the exact one)
    transform = build([crop]).transforms[0]
    assert transform.crop_ratio_range == (0.08, 1.0)
    assert transform.aspect_ratio_range == pytest.approx((3 / 4, 4 / 3))
    assert flip.p == exact[2].prob == 0.5 and exact[2].direction == 'horizontal'
    assert augment.interpolation == exact[4].interpolation == 'bilinear'
    # RandomErasing (p 0.1, area 2 %-1/3, aspect 0.3-3.3, mean colour) and packing
    assert fast[-2:] == exact[-2:]
    assert fast[-2].erase_prob == 0.1
    assert fast[3] == exact[-3] == dict(type='PILToNumpy', to_bgr=True)


def test_batches_are_bgr_uint8_with_torchvisions_mean_colour(photos, recipe):
    """The recipe's batches, normalized by its data preprocessor, against
    torchvision's reference recipe on the same photos and seeds. Both draw the
    box, the flip and TrivialAugment from torch's generator in the same order, so
    only RandomErasing (p = 0.1, NumPy's generator here) draws differently."""
    from mmpretrain.models import ClsDataPreprocessor
    pipeline = build(recipe.train_pipeline)
    pre = recipe.data_preprocessor
    preprocessor = ClsDataPreprocessor(mean=pre.mean, std=pre.std, to_rgb=pre.to_rgb)
    reference = T.Compose([
        T.RandomResizedCrop(176, interpolation=InterpolationMode.BILINEAR, antialias=True),
        T.RandomHorizontalFlip(0.5),
        T.TrivialAugmentWide(interpolation=InterpolationMode.BILINEAR),
        T.PILToTensor(), T.ConvertImageDtype(torch.float),
        T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        T.RandomErasing(p=0.1)])
    ours, theirs = [], []
    for seed in range(4):
        np.random.seed(seed)
        for index, path in enumerate(photos):
            torch.manual_seed(seed * 1000 + index)
            packed = pipeline(dict(img_path=path, gt_label=0))
            assert packed['inputs'].shape == (3, 176, 176)
            assert packed['inputs'].dtype == torch.uint8
            ours.append(packed)
            torch.manual_seed(seed * 1000 + index)
            with Image.open(path) as image:
                theirs.append(reference(image.convert('RGB')))
    batch = preprocessor(dict(inputs=[p['inputs'] for p in ours],
                              data_samples=[p['data_samples'] for p in ours]))['inputs']
    theirs = torch.stack(theirs)
    # per-channel means in normalized units (1 = one std, about 58 grey levels)
    ours_mean, their_mean = batch.mean((0, 2, 3)), theirs.mean((0, 2, 3))
    torch.testing.assert_close(ours_mean, their_mean, atol=0.02, rtol=0)
    # the photos' channels differ, so a channel swap would show
    assert (their_mean.max() - their_mean.min()) > 0.1
    # image for image: equal up to rounding wherever neither side erased
    same = [(a - b).abs().mean() < 0.02 for a, b in zip(batch, theirs)]
    assert sum(same) >= 0.75 * len(same)


def test_demo_config_runs_the_fast_pipeline_on_its_images(digits_root):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'demo', 'vovnet19slim_digits.py'))
    assert cfg.train_dataloader.dataset.pipeline[0].type == 'mmbackbones.DecodeRandomResizedCrop'
    folder = osp.join(digits_root, 'train', 'digit3')
    path = osp.join(folder, sorted(os.listdir(folder))[0])
    train, test = build(cfg.train_pipeline), build(cfg.test_pipeline)
    assert train(dict(img_path=path, gt_label=3))['inputs'].shape == (3, 40, 40)
    assert test(dict(img_path=path, gt_label=3))['inputs'].shape == (3, 48, 48)
    exact = build(cfg.exact_test_pipeline)(dict(img_path=path, gt_label=3))['inputs']
    ours = test(dict(img_path=path, gt_label=3))['inputs']
    assert psnr(ours.numpy(), exact.numpy()) >= FULL_SCALE_PSNR
