# Backbones of mmbackbones for MMDetection configs: each detector config takes one of
# these dicts and the matching FPN channels. Pretrained weights come from the ImageNet
# configs: train, then `python tools/publish_model.py work_dirs/<cfg>/epoch_100.pth
# checkpoints/<cfg>.pth`, which writes checkpoints/<cfg>-<sha>.pth and makes
# checkpoints/<cfg>.pth, the path named below, a link to it (or override with
# --cfg-options model.backbone.init_cfg.checkpoint=PATH). Loading is strict: a wrong
# file or prefix raises instead of silently training from random weights.
custom_imports = dict(imports=['mmbackbones'], allow_failed_imports=False)

# the backbones were pretrained on RGB images normalized with ImageNet's statistics
imagenet_preprocessor = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                             bgr_to_rgb=True)

# detection defaults: stem + first stage frozen, norms in eval mode
detection_defaults = dict(_delete_=True, out_indices=(1, 2, 3, 4), frozen_stages=1,
                          norm_eval=True)


def _pretrained(name):
    return dict(type='Pretrained', checkpoint=f'checkpoints/{name}_imagenet.pth',
                prefix='backbone.')


vovnet39 = dict(detection_defaults, type='VoVNet', depth=39,
                init_cfg=_pretrained('vovnet39'))
vovnet57 = dict(detection_defaults, type='VoVNet', depth=57,
                init_cfg=_pretrained('vovnet57'))
vovnet99 = dict(detection_defaults, type='VoVNet', depth=99,
                init_cfg=_pretrained('vovnet99'))
vovnet_channels = [256, 512, 768, 1024]
cspdarknet53 = dict(detection_defaults, type='mmbackbones.CSPDarknet', depth=53,
                    init_cfg=_pretrained('cspdarknet53'))
darknet53 = dict(detection_defaults, type='mmbackbones.Darknet', depth=53,
                 init_cfg=_pretrained('darknet53'))
darknet_channels = [128, 256, 512, 1024]
# YOLOv3 takes strides 8..32 and YOLOV3Neck wants their channels deepest first
darknet53_yolo = dict(darknet53, out_indices=(2, 3, 4))
yolov3_neck_channels = darknet_channels[:0:-1]

# Public ImageNet weights by name (docs/weights.md; tools/convert_weights.py --list):
# downloaded once into the weights cache, converted on the fly into the network they
# were trained as, strictly (a name for another network is an error).
def _public(name):
    return dict(type='Pretrained', checkpoint=f'mmbackbones://{name}')


# vovnet-detectron2's V-*-eSE files: stem stride 4, eSE in every OSA module; its
# detectors feed them Detectron2's default input (BGR, mean subtracted, std 1)
detectron2_preprocessor = dict(mean=[103.53, 116.28, 123.675], std=[1.0, 1.0, 1.0],
                               bgr_to_rgb=False)
vovnet39_public = dict(vovnet39, stem_stride=4, init_cfg=_public('vovnet-detectron2/V-39-eSE'))
vovnet57_public = dict(vovnet57, stem_stride=4, init_cfg=_public('vovnet-detectron2/V-57-eSE'))
vovnet99_public = dict(vovnet99, stem_stride=4, init_cfg=_public('vovnet-detectron2/V-99-eSE'))
# MMDetection's own Darknet-53 (LeakyReLU 0.1, open-mmlab://darknet53); its YOLOv3
# config's own input normalization (RGB / 255) stays
darknet53_yolo_public = dict(darknet53_yolo, act_cfg=dict(type='LeakyReLU', negative_slope=0.1),
                             init_cfg=_public('mmdet/darknet53'))

# Any timm model (mmbackbones.Timm, docs/timm.md) with timm's own published ImageNet
# weights (weights=True: timm's file for the tag in model_name, downloaded once into
# the weights cache). timm's models take RGB input with ImageNet statistics
# (imagenet_preprocessor).
def _timm(model_name, tag):
    return dict(detection_defaults, type='mmbackbones.Timm', model_name=f'{model_name}.{tag}',
                weights=True)


# ConvNeXt has no stride-2 feature (no level 0): frozen_stages=1 freezes its stem and
# first stage (stride 4), as for ResNet; its norms are LayerNorms (norm_eval: no effect)
convnext_tiny = _timm('convnext_tiny', 'in12k_ft_in1k')
convnext_tiny_channels = [96, 192, 384, 768]
regnety_016 = _timm('regnety_016', 'tv2_in1k')
regnety_016_channels = [48, 120, 336, 888]

# torchvision's ResNet-50 (this package's port): the network of MMDetection's pytorch-style
# R-50 detectors, from torchvision's ImageNet file as their configs start
resnet50_mmdet = dict(detection_defaults, type='mmbackbones.ResNet', depth=50,
                      init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50'))
resnet_channels = [256, 512, 1024, 2048]
# the caffe-style ResNet-50 (stride on the first 1x1 conv) of MMDetection's *-caffe
# detectors; their norms never train (MMDetection's BN requires_grad=False: FrozenBN)
resnet50_caffe_mmdet = dict(resnet50_mmdet, style='caffe', norm_cfg=dict(type='FrozenBN'),
                            init_cfg=dict(type='Pretrained',
                                          checkpoint='open-mmlab://detectron/resnet50_caffe'))
resnet50_caffe_d2_mmdet = dict(resnet50_caffe_mmdet, init_cfg=dict(
    type='Pretrained', checkpoint='open-mmlab://detectron2/resnet50_caffe'))
