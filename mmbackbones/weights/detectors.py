"""Public COCO detectors whose backbone is one of our networks, by name.

A detector's file is its backbone in a known layout (:data:`mmbackbones.weights.LAYOUTS`)
plus the framework's own neck and head tensors, which keep their names: the
loader converts the first and loads the rest by name (:mod:`mmbackbones.loader`).
Each entry names the source's address, its published COCO AP, the configs of
this repository that rebuild the detector, the input it was trained on and its
licence. The figures are the sources' own (no COCO here to re-measure them).
"""
from typing import Dict, List, Tuple

from .entry import DetectorEntry
from .input_format import (DARKNET_RGB, DETECTRON2_BGR, DETECTRON_BGR, MMDET_CAFFE_BGR,
                           MMDET_RGB)

MMDET_LICENCE = 'Apache-2.0 (MMDetection)'
DETECTRON2_LICENCE = 'Apache-2.0 (Detectron2 model zoo)'
VOVNET_LICENCE = ('CC BY-NC 4.0: non-commercial use only (vovnet-detectron2 LICENSE, '
                  'Copyright Youngwan Lee (ETRI))')

#: tensors a framework keeps in a detector's file that are no weights of the
#: model (constants its configs set), left out as the framework itself does:
#: Detectron2's pixel statistics and anchors of files written before they became
#: non-persistent buffers (``DetectionCheckpointer._load_model``)
FRAMEWORK_CONSTANTS: Dict[str, Tuple[str, ...]] = {
    'detectron2': (r'(?:.*\.)?pixel_(?:mean|std)', r'.*anchor_generator\.cell_anchors\..*'),
    'mmdet': (),
}
ALL_CONSTANTS: Tuple[str, ...] = tuple(p for ps in FRAMEWORK_CONSTANTS.values() for p in ps)

LEAKY_01 = dict(type='LeakyReLU', negative_slope=0.1)
MMDET_URL = 'https://download.openmmlab.com/mmdetection/v2.0/'
MMDET_METAFILE = "MMDetection's configs/{}/metafile.yml"

# -- MMDetection's model zoo ------------------------------------------------------
#: name: (file under MMDET_URL, box AP, MMDetection's config, test scale)
YOLOV3 = {
    'yolov3_d53_320_coco': ('yolo/yolov3_d53_320_273e_coco/yolov3_d53_320_273e_coco-421362b6.pth',
                            '27.9', 'yolo/yolov3_d53_8xb8-320-273e_coco.py', 320),
    'yolov3_d53_416_coco': ('yolo/yolov3_d53_mstrain-416_273e_coco/'
                            'yolov3_d53_mstrain-416_273e_coco-2b60fcd9.pth',
                            '30.9', 'yolo/yolov3_d53_8xb8-ms-416-273e_coco.py', 416),
    'yolov3_d53_608_coco': ('yolo/yolov3_d53_mstrain-608_273e_coco/'
                            'yolov3_d53_mstrain-608_273e_coco_20210518_115020-a2c3acb8.pth',
                            '33.7', 'yolo/yolov3_d53_8xb8-ms-608-273e_coco.py', 608),
    'yolov3_d53_amp_608_coco': ('yolo/yolov3_d53_fp16_mstrain-608_273e_coco/yolov3_d53_fp16_'
                                'mstrain-608_273e_coco_20210517_213542-4bc34944.pth',
                                '33.8', 'yolo/yolov3_d53_8xb8-amp-ms-608-273e_coco.py', 608),
}
#: our configs of each YOLOv3 file (the mixed-precision one tests as the 608 one)
YOLOV3_CONFIGS = {
    'yolov3_d53_320_coco': 'yolov3_darknet53-public_320-273e_coco.py',
    'yolov3_d53_416_coco': 'yolov3_darknet53-public_ms-416-273e_coco.py',
    'yolov3_d53_608_coco': 'yolov3_darknet53-public_ms-608-273e_coco.py',
    'yolov3_d53_amp_608_coco': 'yolov3_darknet53-public_ms-608-273e_coco.py',
}

#: MMDetection's R-50 detectors: name (its config's name): (file under MMDET_URL,
#: box AP, our config, style, input). RetinaNet and Faster R-CNN are pytorch-style
#: (torchvision's ResNet-50); its R-50 FCOS files are all caffe-style.
RESNET50 = {
    'retinanet_r50_fpn_1x_coco': (
        'retinanet/retinanet_r50_fpn_1x_coco/retinanet_r50_fpn_1x_coco_20200130-c2398f9e.pth',
        '36.5', 'retinanet_resnet50_fpn_1x_coco.py', 'pytorch', MMDET_RGB),
    'retinanet_r50_fpn_2x_coco': (
        'retinanet/retinanet_r50_fpn_2x_coco/retinanet_r50_fpn_2x_coco_20200131-fdb43119.pth',
        '37.4', 'retinanet_resnet50_fpn_2x_coco.py', 'pytorch', MMDET_RGB),
    'retinanet_r50_fpn_ms-640-800-3x_coco': (
        'retinanet/retinanet_r50_fpn_mstrain_3x_coco/'
        'retinanet_r50_fpn_mstrain_3x_coco_20210718_220633-88476508.pth',
        '39.5', 'retinanet_resnet50_fpn_ms-640-800-3x_coco.py', 'pytorch', MMDET_RGB),
    'faster-rcnn_r50_fpn_1x_coco': (
        'faster_rcnn/faster_rcnn_r50_fpn_1x_coco/faster_rcnn_r50_fpn_1x_coco_20200130-047c8118.pth',
        '37.4', 'faster-rcnn_resnet50_fpn_1x_coco.py', 'pytorch', MMDET_RGB),
    'faster-rcnn_r50_fpn_2x_coco': (
        'faster_rcnn/faster_rcnn_r50_fpn_2x_coco/'
        'faster_rcnn_r50_fpn_2x_coco_bbox_mAP-0.384_20200504_210434-a5d8aa15.pth',
        '38.4', 'faster-rcnn_resnet50_fpn_2x_coco.py', 'pytorch', MMDET_RGB),
    'faster-rcnn_r50_fpn_ms-3x_coco': (
        'faster_rcnn/faster_rcnn_r50_fpn_mstrain_3x_coco/'
        'faster_rcnn_r50_fpn_mstrain_3x_coco_20210524_110822-e10bd31c.pth',
        '40.3', 'faster-rcnn_resnet50_fpn_ms-3x_coco.py', 'pytorch', MMDET_RGB),
    'fcos_r50-caffe_fpn_gn-head_1x_coco': (
        'fcos/fcos_r50_caffe_fpn_gn-head_1x_coco/fcos_r50_caffe_fpn_gn-head_1x_coco-821213aa.pth',
        '36.6', 'fcos_resnet50-caffe_fpn_gn-head_1x_coco.py', 'caffe', DETECTRON_BGR),
    'fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco': (
        'fcos/fcos_center-normbbox-centeronreg-giou_r50_caffe_fpn_gn-head_1x_coco/'
        'fcos_center-normbbox-centeronreg-giou_r50_caffe_fpn_gn-head_1x_coco-0a0d75a8.pth',
        '38.7', 'fcos_resnet50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py',
        'caffe', MMDET_CAFFE_BGR),
}
DETECTORS_BY_PREFIX = {'retinanet': 'RetinaNet + FPN', 'faster-rcnn': 'Faster R-CNN + FPN',
                       'fcos': 'FCOS + FPN'}


def _mmdet() -> List[DetectorEntry]:
    entries = [DetectorEntry(
        f'mmdet/{name}', MMDET_URL + path, 'Darknet', dict(depth=53, act_cfg=LEAKY_01),
        'mmdet:darknet53', resolution=scale, normalization=DARKNET_RGB,
        ap=f'box AP {ap} ({MMDET_METAFILE.format("yolo")})', framework='mmdet',
        detector='YOLOv3', configs=(f'configs/detection/{YOLOV3_CONFIGS[name]}', ),
        source_config=f'configs/{config}', licence=MMDET_LICENCE)
        for name, (path, ap, config, scale) in YOLOV3.items()]
    for name, (path, ap, ours, style, input_format) in RESNET50.items():
        folder = name.split('_', 1)[0].replace('-', '_')
        entries.append(DetectorEntry(
            f'mmdet/{name}', MMDET_URL + path, 'ResNet',
            dict(depth=50) if style == 'pytorch' else dict(depth=50, style=style),
            'torchvision:resnet50', resolution=800, normalization=input_format,
            ap=f'box AP {ap} ({MMDET_METAFILE.format(folder)})', framework='mmdet',
            detector=DETECTORS_BY_PREFIX[name.split('_', 1)[0]],
            configs=(f'configs/detection/{ours}', ), source_config=f'configs/{folder}/{name}.py',
            licence=MMDET_LICENCE))
    return entries


# -- Detectron2's model zoo -------------------------------------------------------
DETECTRON2_URL = 'https://dl.fbaipublicfiles.com/detectron2/'
#: name: (its config in Detectron2's model zoo, file, published AP, our config, architecture)
DETECTRON2 = {
    'retinanet_R_50_FPN_3x': ('COCO-Detection/retinanet_R_50_FPN_3x',
                              '190397829/model_final_5bd44e.pkl', 'box AP 38.7',
                              'retinanet_resnet50_fpn_3x.yaml', 'RetinaNet + FPN'),
    'faster_rcnn_R_50_FPN_3x': ('COCO-Detection/faster_rcnn_R_50_FPN_3x',
                                '137849458/model_final_280758.pkl', 'box AP 40.2',
                                'faster_rcnn_resnet50_fpn_3x.yaml', 'Faster R-CNN + FPN'),
    'mask_rcnn_R_50_FPN_3x': ('COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x',
                              '137849600/model_final_f10217.pkl', 'box AP 41.0, mask AP 37.2',
                              'mask_rcnn_resnet50_fpn_3x.yaml', 'Mask R-CNN + FPN'),
}


def _detectron2() -> List[DetectorEntry]:
    return [DetectorEntry(
        f'detectron2/{name}', f'{DETECTRON2_URL}{config}/{file}', 'ResNet',
        dict(depth=50, style='caffe'), 'detectron2:R-50', normalization=DETECTRON2_BGR,
        filename=f'detectron2--{name}--{file.rsplit("/", 1)[1]}',
        ap=f"{ap} (Detectron2's MODEL_ZOO.md)", framework='detectron2', detector=detector,
        configs=(f'configs/detectron2/{ours}', ),
        source_config=f'detectron2/model_zoo/configs/{config}.yaml',
        licence=DETECTRON2_LICENCE)
        for name, (config, file, ap, ours, detector) in DETECTRON2.items()]


# -- vovnet-detectron2 (youngwanLEE), README "Results on MS-COCO in Detectron2" ----------
#: file: (address as its README gives it, published AP)
VOVNET = {
    'faster_V_19_eSE_ms_3x': ('https://www.dropbox.com/s/1rfvi6vzx45z6y5/faster_V_19_eSE_ms_3x.pth'
                              '?dl=1', 'box AP 38.9'),
    'faster_V_39_eSE_ms_3x': ('https://dl.dropbox.com/s/dkto39ececze6l4/faster_V_39_eSE_ms_3x.pth',
                              'box AP 42.7'),
    'faster_V_57_eSE_ms_3x': ('https://dl.dropbox.com/s/c7mb1mq10eo4pzk/faster_V_57_eSE_ms_3x.pth',
                              'box AP 43.3'),
    'faster_V_99_eSE_ms_3x': ('https://dl.dropbox.com/s/v64mknwzfpmfcdh/faster_V_99_eSE_ms_3x.pth',
                              'box AP 44.1'),
    'mask_V_19_eSE_ms_3x': ('https://www.dropbox.com/s/dyeyuag5va96tqo/mask_V_19_eSE_ms_3x.pth'
                            '?dl=1', 'box AP 40.1, mask AP 36.6'),
    'mask_V_39_eSE_ms_3x': ('https://dl.dropbox.com/s/c5o3yr6lwrb1170/mask_V_39_eSE_ms_3x.pth',
                            'box AP 43.8, mask AP 39.3'),
    'mask_V_57_eSE_ms_3x': ('https://dl.dropbox.com/s/aturknfroupyw92/mask_V_57_eSE_ms_3x.pth',
                            'box AP 44.2, mask AP 39.7'),
    'mask_V_99_eSE_ms_3x': ('https://dl.dropbox.com/s/qx45cnv718k4zmn/mask_V_99_eSE_ms_3x.pth',
                            'box AP 44.9, mask AP 40.3'),
    'panoptic_V_39_eSE_3x': ('https://www.dropbox.com/s/fnr9r4arv0cbfbf/panoptic_V_39_eSE_3x.pth'
                             '?dl=1', 'PQ 43.4, box AP 42.8, mask AP 38.5'),
    'panoptic_V_57_eSE_3x': ('https://www.dropbox.com/s/zhoqx5rvc0jj0oa/panoptic_V_57_eSE_3x.pth'
                             '?dl=1', 'PQ 44.3, box AP 43.4, mask AP 39.2'),
}
#: the file's kind: (its config in vovnet-detectron2, ours, the architecture)
VOVNET_KINDS = {
    'faster': ('faster_rcnn_V_{d}_FPN_3x.yaml', 'faster_rcnn_vovnet{d}_fpn_ms_3x.yaml',
               'Faster R-CNN + FPN'),
    'mask': ('mask_rcnn_V_{d}_FPN_3x.yaml', 'mask_rcnn_vovnet{d}_fpn_ms_3x.yaml',
             'Mask R-CNN + FPN'),
    'panoptic': ('panoptic_fpn_V_{d}_FPN_3x.yaml', 'panoptic_fpn_vovnet{d}_ms_3x.yaml',
                 'Panoptic FPN'),
}


def _vovnet_detectron2() -> List[DetectorEntry]:
    entries = []
    for name, (url, ap) in VOVNET.items():
        kind, depth = name.split('_')[0], int(name.split('_')[2])
        theirs, ours, detector = VOVNET_KINDS[kind]
        entries.append(DetectorEntry(
            f'vovnet-detectron2/{name}', url, 'VoVNet', dict(depth=depth, stem_stride=4),
            f'vovnet-detectron2:V-{depth}-eSE', normalization=DETECTRON2_BGR,
            ap=f'{ap} (vovnet-detectron2 README)', framework='detectron2', detector=detector,
            configs=(f'configs/detectron2/{ours.format(d=depth)}', ),
            source_config=f'configs/{theirs.format(d=depth)}', licence=VOVNET_LICENCE))
    return entries


#: every public detector file, in the catalog's order
DETECTORS: Tuple[DetectorEntry, ...] = (*_vovnet_detectron2(), *_mmdet(), *_detectron2())
