"""Low-precision deployments (mmbackbones.export.quantize, tools/deploy.py
--precision): int8 quantized after training in both runtimes, judged by mAP and
by how its detections agree with PyTorch's; comparisons that refuse to call
nothing equal; the detector part of tools/benchmark_deploy.py."""
import json
import os
import os.path as osp
import re
import sys

import onnx
import pytest
import torch
from mmengine.config import Config

from detection_utils import on_demo_data
from test_deploy_detector import ROOT, save_random_checkpoint
from training_utils import run_tool

sys.path.insert(0, osp.join(ROOT, 'tools'))
import benchmark_deploy  # noqa: E402
import deploy as deploy_tool  # noqa: E402

DEMO = osp.join(ROOT, 'configs', 'demo', 'retinanet_vovnet19slim_digits.py')


def demo_options(det_root: str, batch: int = 8):
    """The demo config on the session's demo data, in this process, ``batch``
    test and validation images at a time."""
    return ['--cfg-options', f'data_root={det_root}/', 'model.backbone.init_cfg=None',
            'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
            'test_dataloader.num_workers=0', f'val_dataloader.batch_size={batch}',
            f'test_dataloader.batch_size={batch}']


@pytest.fixture(scope='module')
def demo_checkpoint(det_root, tmp_path_factory):
    """The demo RetinaNet with random weights and BN statistics: scores spread
    over (0, 1), so every image has detections for int8 to agree with (a short
    training leaves RetinaNet's scores under score_thr: no detections at all)."""
    cfg = on_demo_data(Config.fromfile(DEMO), det_root)
    return save_random_checkpoint(cfg, tmp_path_factory.mktemp('int8') / 'demo.pth')


@pytest.mark.slow  # NNCF with accuracy control, both runtimes (make test, not test-fast)
def test_int8_deployment_in_both_runtimes(det_root, demo_checkpoint, tmp_path):
    """tools/deploy.py --precision int8 on the demo RetinaNet, both runtimes from
    one export, calibrated on 8 training images: OpenVINO through NNCF with
    accuracy control (the config has a validation set), ONNX Runtime through QDQ.
    --eval prints PyTorch's mAP beside each int8 one and their detections'
    agreement, and the folder records precision, calibration and accuracy;
    DeployedDetector runs it like any other. (Random weights: the mAP kept is
    measured on the trained demo detector, docs/deployment.md.)"""
    # int8 models run in processes of their own, never in this long-lived one: an
    # xdist worker that had quantized with NNCF and run OpenVINO's int8 model here
    # died of a segmentation fault later, in another test (3 full runs of 3)
    work = str(tmp_path / 'deploy')
    out = run_tool([
        'tools/deploy.py', DEMO, demo_checkpoint, '--backend', 'onnxruntime', 'openvino',
        '--precision', 'int8', '--calib', '8', '--eval', '--max-batches', '1', '--max-drop',
        '100', '--work-dir', work, *demo_options(det_root)]).stdout
    assert sorted(os.listdir(work)) == ['deploy.json', 'end2end.onnx', 'end2end_int8.bin',
                                        'end2end_int8.onnx', 'end2end_int8.xml',
                                        'model_config.py']
    printed = {}
    for backend in ('onnxruntime', 'openvino'):
        found = re.search(rf'coco/bbox_mAP: pytorch ([0-9.]+), {backend} int8 ([0-9.]+): '
                          rf'(drop|gain) [0-9.]+ % \(within --max-drop 100 %\)', out)
        assert found, out
        printed[backend] = float(found.group(2))
        agreement = re.search(rf'{backend} int8 vs pytorch: matched (\d+) of (\d+) detections '
                              r'\(([0-9.]+) %; same label, IoU >= 0\.5; \d+ found\), IoU mean '
                              r'([0-9.]+)', out)
        assert agreement, out
        # most of PyTorch's detections are found again, boxes close
        assert float(agreement.group(3)) > 50 and float(agreement.group(4)) > 0.8, out
    meta = json.load(open(osp.join(work, 'deploy.json')))
    assert meta['precision'] == 'int8' and meta['models'] == {
        'onnxruntime': 'end2end_int8.onnx', 'openvino': 'end2end_int8.xml'}
    calibration = meta['calibration']
    assert calibration['count'] == 8 and len(set(calibration['images'])) == 8
    assert all(osp.dirname(p) == osp.join(det_root, 'train') for p in calibration['images'])
    openvino = meta['quantization']['openvino']
    assert openvino['quantizer'].startswith('nncf 3.4.0 quantize_with_accuracy_control')
    assert openvino['validation']['items'] == 1 and openvino['max_drop'] == 1.0
    onnxruntime = meta['quantization']['onnxruntime']
    assert onnxruntime['format'] == 'QDQ'
    # the head's classifier and box regressor of each level stay fp32 (their outputs are
    # what the post-processing reads)
    assert sorted(onnxruntime['fp32_layers']) == sorted(
        f'/bbox_head/retina_{kind}{suffix}/Conv' for kind in ('cls', 'reg')
        for suffix in ('', '_1', '_2', '_3', '_4'))
    accuracy = meta['accuracy']
    assert accuracy['images'] == 8 and accuracy['runtimes'] == pytest.approx(printed, abs=1e-4)
    assert accuracy['agreement']['openvino']['matched'] > 0
    # the models are int8: integer weights behind dequantization, fake-quantized activations
    ops = [node.op_type for node in onnx.load(osp.join(work, 'end2end_int8.onnx')).graph.node]
    assert ops.count('DequantizeLinear') > 50 and 'NonMaxSuppression' in ops
    assert 'FakeQuantize' in open(osp.join(work, 'end2end_int8.xml')).read()
    image = osp.join(det_root, 'val', '0000.jpg')
    runs = run_tool(['-c', DEPLOYED_DETECTOR_RUNS, work, image]).stdout.split()
    # the int8 model of each runtime, then the same folder's fp32 model on request, in
    # OpenVINO computing in fp32 or bf16: each file, and detections from each
    assert runs[:4] == [meta['models']['onnxruntime'], meta['models']['openvino'],
                        'end2end.onnx', 'end2end.onnx'], runs
    assert all(int(count) > 0 for count in runs[4:]) and len(runs) == 8, runs


#: DeployedDetector(FOLDER, backend[, precision]) on IMAGE: each file run, then
#: each count of detections
DEPLOYED_DETECTOR_RUNS = """
import os.path as osp, sys
from mmbackbones.export.detector import DeployedDetector
folder, image = sys.argv[1:]
runs = [DeployedDetector(folder, 'onnxruntime'), DeployedDetector(folder, 'openvino'),
        DeployedDetector(folder, 'openvino', precision='fp32'),
        DeployedDetector(folder, 'openvino', precision='bf16')]
print(*[osp.basename(d.session.path) for d in runs], *[len(d([image])[0]['scores']) for d in runs])
"""


@pytest.mark.parametrize('argv, error, message', [
    (['--precision', 'int8', '--calib', '0'], ValueError,
     r'calib=0: int8 needs calibration images \(at least 1; default 300'),
    (['--precision', 'int8', 'train_dataloader.dataset.ann_file=annotations/none.json'],
     ValueError, r"int8 needs calibration images from the config's training set "
                 r"\(train_dataloader\.dataset, .*annotations/none\.json\), which cannot be "
                 r"read: .*none\.json"),
    (['--precision', 'bf16'], ValueError,
     r"precision='bf16' with onnxruntime: it runs fp32, int8 on the CPU; for bf16, choose "
     r"openvino"),
    (['--precision', 'int8', '--backend', 'openvino', '--no-nncf'], ImportError,
     r'int8 for openvino needs its quantizer \(nncf\), which is not installed: '
     r'pip install "mmbackbones\[int8\]"'),
    (['--precision', 'int8', 'model.test_cfg.nms.type=soft_nms'], Exception,
     r"soft_nms.*Supported: RetinaNet-like"),
])
def test_int8_refusals_come_before_any_file(argv, error, message, det_root, demo_checkpoint,
                                            tmp_path, monkeypatch):
    """int8 without calibration images (none asked for, a training set that
    cannot be read), a precision the runtime does not run, a quantizer not
    installed, a detector that cannot be quantized: each a clear error naming
    the value and the choices, before anything is exported."""
    options = [a for a in argv if '=' in a]
    flags = [a for a in argv if '=' not in a and a != '--no-nncf']
    if '--no-nncf' in argv:
        monkeypatch.setitem(sys.modules, 'nncf', None)
    work = tmp_path / 'deploy'
    with pytest.raises(error, match=message):
        deploy_tool.main([DEMO, demo_checkpoint, '--work-dir', str(work), *flags,
                          *demo_options(det_root), *options])
    assert not work.exists() or os.listdir(work) == []


def test_last_layers_are_those_feeding_only_the_post_processing():
    """ONNX Runtime's int8 leaves a layer in fp32 when no other layer reads it,
    within the network's modules: the heads' outputs, even through a module's own
    elementwise op (FCOS's scales); not a layer read by the post-processing and
    by a layer (an FPN output, which RoIAlign reads too)."""
    from onnx import helper

    from mmbackbones.export.quantize import last_layers
    nodes = [helper.make_node('Conv', ['x', 'w'], ['a'], name='/neck/fpn/Conv'),
             helper.make_node('RoiAlign', ['a', 'r', 'i'], ['p'], name='/RoiAlign'),
             helper.make_node('Conv', ['a', 'w'], ['b'], name='/head/cls/Conv'),
             helper.make_node('Transpose', ['b'], ['c'], name='/Transpose'),
             helper.make_node('Conv', ['a', 'w'], ['d'], name='/head/reg/Conv'),
             helper.make_node('Mul', ['d', 's'], ['e'], name='/head/scales.0/Mul'),
             helper.make_node('Exp', ['e'], ['f'], name='/Exp'),
             helper.make_node('Gemm', ['p', 'w'], ['g'], name='/bbox_head/fc/Gemm'),
             helper.make_node('Softmax', ['g'], ['h'], name='Softmax_12')]
    graph = helper.make_graph(nodes, 'g', [], [])
    assert last_layers(graph) == ['/head/cls/Conv', '/head/reg/Conv', '/bbox_head/fc/Gemm']


def test_a_comparison_of_nothing_is_not_equality():
    """compare_detections on two empty lists: nothing was compared, said so,
    unless allow_empty."""
    from mmbackbones.export.detector import NOTHING_COMPARED, compare_detections
    none = dict(bboxes=torch.zeros(0, 4), scores=torch.zeros(0),
                labels=torch.zeros(0, dtype=torch.long))
    one = dict(bboxes=torch.tensor([[0., 0., 10., 10.]]), scores=torch.tensor([0.9]),
               labels=torch.tensor([3]))
    assert compare_detections(none, none) == NOTHING_COMPARED
    assert 'nothing was compared' in NOTHING_COMPARED
    assert compare_detections(none, none, allow_empty=True) is None
    assert compare_detections(one, none) == '0 detections, expected 1'
    assert compare_detections(one, dict(one)) is None


def test_deploy_counts_images_without_detections_apart(capsys):
    """tools/deploy.py --eval (fp32): images without detections on either side
    are counted apart; it fails when no image had any, or any differs."""
    result = dict(differing=dict(onnxruntime=[]), compared=dict(onnxruntime=3),
                  empty=dict(onnxruntime=2))
    assert deploy_tool.report_equality(result) == 0
    out = capsys.readouterr().out
    assert 'onnxruntime: images compared: 3 with detections, 2 without' in out, out
    assert 'onnxruntime: images whose detections differ: 0' in out, out
    result.update(compared=dict(onnxruntime=0), empty=dict(onnxruntime=5))
    assert deploy_tool.report_equality(result) == 1
    assert 'onnxruntime: nothing was compared: no image had detections' in \
        capsys.readouterr().out


def test_low_precision_fails_beyond_the_allowed_drop(capsys):
    """--eval of an int8 deployment: status 1 when its mAP drops by more than
    --max-drop percent of PyTorch's (relative), 0 within it or for a gain."""
    agreement = dict(iou_threshold=0.5, expected=10, got=9, matched=9, matched_fraction=0.9,
                     iou_mean=0.95, iou_min=0.8, score_diff_mean=0.01, score_diff_max=0.05)

    def result(value):
        return dict(pytorch={'coco/bbox_mAP': 0.5},
                    runtimes=dict(openvino={'coco/bbox_mAP': value}),
                    agreement=dict(openvino=agreement))
    assert deploy_tool.report_accuracy(result(0.496), 'int8', 1.0) == 0
    assert 'pytorch 0.5000, openvino int8 0.4960: drop 0.80 % (within --max-drop 1 %)' in \
        capsys.readouterr().out
    assert deploy_tool.report_accuracy(result(0.49), 'int8', 1.0) == 1
    out = capsys.readouterr().out
    assert 'drop 2.00 % (MORE than --max-drop 1 %)' in out, out
    assert ('openvino int8 vs pytorch: matched 9 of 10 detections (90.0 %; same label, '
            'IoU >= 0.5; 9 found), IoU mean 0.950 min 0.800, score difference mean 0.0100 '
            'max 0.0500') in out, out
    assert deploy_tool.report_accuracy(result(0.51), 'int8', 0.0) == 0
    assert 'gain 2.00 %' in capsys.readouterr().out


def test_agreement_matches_best_first_by_label_and_overlap():
    from mmbackbones.export.detector import Agreement
    expected = dict(bboxes=torch.tensor([[0., 0., 10., 10.], [20., 20., 30., 30.],
                                         [50., 50., 60., 60.]]),
                    scores=torch.tensor([0.9, 0.8, 0.7]), labels=torch.tensor([1, 2, 3]))
    got = dict(bboxes=torch.tensor([[0., 0., 10., 11.], [20., 20., 30., 30.],
                                    [50., 50., 60., 60.]]),
               scores=torch.tensor([0.85, 0.8, 0.7]), labels=torch.tensor([1, 2, 4]))
    agreement = Agreement()
    agreement.add(expected, got)
    summary = agreement.summary()
    # the third detection changed its label: not a match
    assert (summary['expected'], summary['got'], summary['matched']) == (3, 3, 2)
    assert summary['iou_min'] == pytest.approx(10 / 11)
    assert summary['score_diff_max'] == pytest.approx(0.05)


@pytest.mark.slow  # six backends, int8 quantized twice
def test_benchmark_detector_part_runs_every_backend():
    """The detector part of tools/benchmark_deploy.py (the README's speed table),
    tiny: every backend, int8 ones included, gets a row with its time."""
    backends = list(benchmark_deploy.BACKENDS)
    out = run_tool([  # in its own process: see test_int8_deployment_in_both_runtimes
        'tools/benchmark_deploy.py', DEMO, '--part', 'detector', '--shape', '64', '--batch',
        '1', '--repeats', '1', '--iters', '1', '--warmup', '0', '--calib', '2', '--threads',
        '1', '--backends', *backends]).stdout
    rows = re.findall(r'^\| detector \| 1 \| (\S+) \| ([0-9.]+) \([0-9.]+\.\.[0-9.]+\) \| '
                      r'([0-9.]+) \| ([0-9.]+) \|$', out, re.M)
    assert [row[0] for row in rows] == backends, out
    assert all(float(ms) > 0 and float(rate) > 0 and float(ratio) > 0
               for _, ms, rate, ratio in rows), out
