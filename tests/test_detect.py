"""tools/detect.py: a detector on photos, drawn and listed; the same detections
as MMDetection's own inference, in PyTorch and from a deployment folder."""
import json
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from detection_utils import CLASSES

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))
import detect as detect_tool  # noqa: E402

DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'retinanet_vovnet19slim_digits.py')
#: a valid --model and --weights: the images are checked first
PYTORCH = ['--model', DEMO_CONFIG, '--weights', DEMO_CONFIG]


@pytest.fixture(scope='module')
def demo_detector(tmp_path_factory):
    """The demo's RetinaNet with random weights and BN statistics (PyTorch's
    default initialisation: scores spread over (0, 1), so boxes are drawn), saved
    as a training run saves it: no test fixture trains one at session scope."""
    from mmbackbones.export.detector import build_detector
    torch.manual_seed(0)
    detector, _ = build_detector(DEMO_CONFIG)
    for m in detector.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    path = str(tmp_path_factory.mktemp('detector') / 'epoch_3.pth')
    torch.save({'state_dict': detector.state_dict(), 'meta': {}}, path)
    return path


@pytest.fixture(scope='module')
def images(det_root, tmp_path_factory):
    """A demo image and a folder holding one sample photo (both named 0000.*)."""
    from mmbackbones.datasets.photos import write_sample_photos
    folder = str(tmp_path_factory.mktemp('photos'))
    photo, = write_sample_photos(folder, 1)
    return osp.join(det_root, 'val', '0000.jpg'), folder, photo


@pytest.fixture(scope='module')
def reference(demo_detector, images):
    """MMDetection's own init_detector + inference_detector (the config's test
    pipeline, MMEngine's checkpoint loading): every detection, per image."""
    from mmdet.apis import inference_detector, init_detector
    from mmengine.registry import DefaultScope
    demo_image, _, photo = images
    with DefaultScope.overwrite_default_scope('mmdet'):
        detector = init_detector(DEMO_CONFIG, demo_detector, device='cpu')
        found = {path: inference_detector(detector, path).pred_instances
                 for path in (demo_image, photo)}
    return {path: dict(bboxes=f.bboxes, scores=f.scores, labels=f.labels)
            for path, f in found.items()}


def read_json(out) -> dict:
    with open(osp.join(out, 'detections.json')) as f:
        return json.load(f)


def as_instances(entry: dict) -> dict:
    found = entry['detections']
    return dict(bboxes=torch.tensor([d['bbox'] for d in found]).reshape(-1, 4),
                scores=torch.tensor([d['score'] for d in found]),
                labels=torch.tensor([d['label'] for d in found], dtype=torch.long))


def rgb(path: str) -> np.ndarray:
    import mmcv
    return mmcv.imread(path, channel_order='rgb')


def test_draws_and_lists_mmdetections_detections(demo_detector, images, reference, tmp_path):
    """A demo image and a folder with a photo: per image a PNG with the
    detections scoring at least --score-thr drawn, and the JSON lists exactly
    MMDetection's detections above it (boxes in the image's own pixels, class
    names of the config). With nothing above the threshold the PNG is the
    image, unchanged."""
    demo_image, folder, photo = images
    out = str(tmp_path / 'out')
    assert detect_tool.main([demo_image, folder, '--model', DEMO_CONFIG,
                             '--weights', demo_detector, '--out', out,
                             '--score-thr', '0.62']) == 0
    result = read_json(out)
    assert result['classes'] == list(CLASSES) and result['score_thr'] == 0.62
    assert [e['file'] for e in result['images']] == [demo_image, photo]
    # both stems are 0000: the second PNG is numbered
    assert [e['drawn'] for e in result['images']] == ['0000.png', '0000_1.png']
    assert sorted(os.listdir(out)) == ['0000.png', '0000_1.png', 'detections.json']
    for entry in result['images']:
        path = entry['file']
        image = rgb(path)
        assert (entry['height'], entry['width']) == image.shape[:2]
        expected = reference[path]
        above = expected['scores'] >= 0.62
        assert 0 < above.sum() < len(above)  # the threshold keeps some, drops some
        got = as_instances(entry)
        assert torch.equal(got['labels'], expected['labels'][above])
        assert torch.allclose(got['scores'], expected['scores'][above], atol=1e-6)
        assert torch.allclose(got['bboxes'], expected['bboxes'][above], atol=1e-4)
        assert all(d['class'] == CLASSES[d['label']] for d in entry['detections'])
        drawn = np.asarray(Image.open(osp.join(out, entry['drawn'])).convert('RGB'))
        assert drawn.shape == image.shape
        # the best box's left edge is drawn over the image (it is drawn last)
        x1, y1, x2, y2 = (int(round(v)) for v in entry['detections'][0]['bbox'])
        rows, columns = slice((y1 + y2) // 2, max(y2 - 1, (y1 + y2) // 2 + 1)), \
            slice(max(x1 - 1, 0), x1 + 2)  # the line, wherever the rounding puts it
        edge = (drawn[rows, columns] != image[rows, columns]).any(axis=(1, 2))
        assert edge.all(), entry['detections'][0]
    out_none = str(tmp_path / 'none')
    assert detect_tool.main([demo_image, '--model', DEMO_CONFIG, '--weights', demo_detector,
                             '--out', out_none, '--score-thr', '1']) == 0
    assert read_json(out_none)['images'][0]['detections'] == []
    unchanged = np.asarray(Image.open(osp.join(out_none, '0000.png')).convert('RGB'))
    assert np.array_equal(unchanged, rgb(demo_image))


def test_a_deployment_gives_the_pytorch_detections(demo_detector, images, reference,
                                                    tmp_path):
    """--deployment runs a tools/deploy.py folder (ONNX Runtime; the demo
    detector, exported at its 128 px): every detection (--score-thr 0) equals
    MMDetection's in the original image's pixels, within the deployment tests'
    tolerances (boxes 1e-3, scores 1e-4), on the demo image and a larger photo."""
    from mmbackbones.export.detector import compare_detections, write_deployment
    demo_image, folder, photo = images
    work = str(tmp_path / 'deploy')
    write_deployment(DEMO_CONFIG, demo_detector, work, 'onnxruntime')
    out = str(tmp_path / 'out')
    assert detect_tool.main([demo_image, photo, '--deployment', work, '--out', out,
                             '--score-thr', '0']) == 0
    result = read_json(out)
    assert result['deployment'] == work and result['classes'] == list(CLASSES)
    for entry in result['images']:
        got = as_instances(entry)
        assert len(got['scores']) > 10
        assert compare_detections(reference[entry['file']], got) is None, entry['file']
    assert rgb(photo).shape[:2] != (128, 128)  # the boxes were mapped back from 128 px


@pytest.mark.parametrize('argv, error, message', [
    (['missing.jpg', *PYTORCH], FileNotFoundError, r'missing\.jpg: no such image file or folder'),
    (['{bad}', *PYTORCH], ValueError, r'bad\.jpg: not a readable image \(not an image'),
    (['{empty_dir}', *PYTORCH], FileNotFoundError, r'a folder without images'),
    (['{demo}', '--score-thr', '1.5'], ValueError,
     r'--score-thr 1\.5: a score threshold is in \[0, 1\]'),
    (['{demo}', '--score-thr', '-0.1'], ValueError, r'in \[0, 1\]'),
    (['{demo}', '--deployment', 'dep', '--weights', 'w.pth'], ValueError,
     r'--deployment runs the weights and config it was exported with'),
    (['{demo}', '--deployment', '{empty_dir}'], FileNotFoundError,
     r'not a deployment folder \(no deploy\.json'),
    (['{demo}'], ValueError, r'give --model CONFIG \(with --weights\) or --deployment DIR'),
    (['{demo}', '--model', 'retinanet', '--weights', 'w.pth'], ValueError,
     r"--model 'retinanet' is neither a config file nor a named detector; --model takes "
     r'an MMDetection config file \(configs/detection/: .*retinanet_vovnet39_fpn_1x_coco\.py'
     r'.*configs/demo/: retinanet_vovnet19slim_digits\.py\); named detectors: none yet'),
    (['{demo}', '--model', 'vovnet-detectron2/V-39-eSE'], ValueError,
     r"'vovnet-detectron2/V-39-eSE' names ImageNet weights of a VoVNet backbone, not a "
     r'detector; --model takes an MMDetection config file'),
    (['{demo}', '--model', 'configs/detection/absent.py'], FileNotFoundError,
     r'absent\.py.: no such config file'),
    (['{demo}', '--model', 'configs/vovnet39_imagenet.py', '--weights', '{bad}'], ValueError,
     r"not an MMDetection detector config \(scope 'mmpretrain', model 'ImageClassifier'\)"),
    (['{demo}', '--model', DEMO_CONFIG], ValueError,
     r'give --weights, the trained detector'),
    (['{demo}', '--model', DEMO_CONFIG, '--weights', 'absent.pth'], FileNotFoundError,
     r'--weights absent\.pth: no such file'),
])
def test_bad_input_is_a_clear_error_before_any_model(argv, error, message, images, tmp_path):
    bad = tmp_path / 'bad.jpg'
    bad.write_text('not a JPEG')
    (tmp_path / 'empty').mkdir()
    names = dict(bad=str(bad), empty_dir=str(tmp_path / 'empty'), demo=images[0])
    argv = [arg.format(**names) for arg in argv]
    with pytest.raises(error, match=message):
        detect_tool.main(argv + ['--out', str(tmp_path / 'out')])
    assert not osp.exists(tmp_path / 'out')


def test_class_names_come_from_the_checkpoint_then_the_config():
    """The checkpoint's dataset_meta (what it was trained on) wins; then the
    config's test set: its metainfo (the demo's digits), else its dataset type's
    own (COCO's 80); labels beyond the names are shown as indices."""
    from mmbackbones.detect import class_name, class_names
    demo = Config.fromfile(DEMO_CONFIG)
    assert class_names(demo) == list(CLASSES)
    assert class_names(demo, dict(dataset_meta=dict(classes=('a', 'b')))) == ['a', 'b']
    coco = Config.fromfile(osp.join(ROOT, 'configs', 'detection',
                                    'retinanet_vovnet39_fpn_1x_coco.py'))
    names = class_names(coco)
    assert len(names) == 80 and names[0] == 'person'
    assert class_name(['a', 'b'], 1) == 'b' and class_name(['a', 'b'], 7) == '7'
