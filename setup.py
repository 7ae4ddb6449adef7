from setuptools import find_packages, setup

version = {}
with open('mmbackbones/version.py') as f:
    exec(f.read(), version)

setup(
    name='mmbackbones',
    version=version['__version__'],
    description='Darknet, CSPDarknet, VoVNet and multi-output torchvision backbones '
                'for MMDetection, MMPretrain and Detectron2',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.11',
    packages=find_packages(include=['mmbackbones', 'mmbackbones.*']),
    install_requires=[
        'torch>=2.0',
        'torchvision>=0.15',
        'mmengine>=0.10.0,<1.0',
        # mmdet 3.3 refuses mmcv >= 2.2; the compiled ops are needed by detectors.
        'mmcv>=2.0.0,<2.2.0',
        # the recipe's fast data pipeline decodes JPEGs with it (libjpeg-turbo,
        # wheels for every platform): OpenCV's pixels in 10 % less time at full size
        # (docs/speed.md's decoder table)
        'simplejpeg==1.9.0',
    ],
    extras_require={
        'pretrain': ['mmpretrain>=1.2.0,<1.3', 'scikit-learn>=1.3'],
        'det': ['mmdet>=3.3.0,<3.4', 'scikit-learn>=1.3'],
        # torch.onnx.export's default (dynamo) exporter needs onnxscript
        'onnx': ['onnx>=1.15', 'onnxruntime>=1.17', 'onnxscript>=0.7'],
        'openvino': ['openvino>=2026.4'],
        # tools/deploy.py --precision int8: NNCF's post-training quantization (OpenVINO);
        # ONNX Runtime's quantizer comes with onnxruntime
        'int8': ['nncf==3.4.0', 'openvino>=2026.4', 'onnx>=1.15', 'onnxruntime>=1.17'],
        'benchmark': ['timm==1.0.31'],
        # mmbackbones.Timm: any timm model as a backbone (features_only, feature_info)
        'timm': ['timm>=1.0.31,<2', 'safetensors'],
        # Detectron2 itself is not on PyPI (tools/setup_env.sh builds it where its
        # source archive is at hand); these are its runtime dependencies
        'detectron2': ['fvcore>=0.1.5,<0.1.6', 'iopath>=0.1.7,<0.1.10', 'omegaconf>=2.1,<2.4',
                       'hydra-core>=1.1', 'yacs>=0.1.8', 'tabulate', 'termcolor>=1.1',
                       'cloudpickle', 'pycocotools>=2.0.2', 'tensorboard', 'black'],
        'tests': ['pytest>=8', 'pytest-xdist>=3'],
    },
    license='Apache-2.0',
)
