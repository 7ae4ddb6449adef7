"""Running an exported model in an inference runtime on the CPU: ONNX Runtime or
OpenVINO. A :class:`Session` loads the file once and runs it many times (what a
server does, and what a benchmark must time); ``run_onnxruntime`` and
``run_openvino`` are the one-call forms."""
import os
import os.path as osp
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from .files import written_whole

BACKENDS = ('onnxruntime', 'openvino')
#: what to install for each runtime
INSTALL = {'onnxruntime': 'pip install "mmbackbones[onnx]" (or onnxruntime)',
           'openvino': 'pip install "mmbackbones[openvino]" (or openvino)'}

Inputs = Union[np.ndarray, Sequence[np.ndarray], Mapping[str, np.ndarray]]


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f'backend={backend!r}: choose one of {", ".join(BACKENDS)}')
    return backend


def require(backend: str):
    """The runtime's module, or an ImportError naming what to install."""
    check_backend(backend)
    try:
        if backend == 'onnxruntime':
            import onnxruntime
            return onnxruntime
        import openvino
        return openvino
    except ImportError:
        raise ImportError(f'{backend} is not installed: {INSTALL[backend]}') from None


class Session:
    """An exported model loaded into ``backend`` on the CPU.

    ``path`` is an ONNX file (either runtime) or an OpenVINO IR ``.xml``.
    OpenVINO computes in fp32 unless ``precision='bf16'`` (its own default on a
    CPU with native bf16; outputs then differ from PyTorch's fp32 beyond 1e-4;
    ``'fp32'`` and ``'f32'`` are the same). An int8 model (quantized: see
    :mod:`~mmbackbones.export.quantize`) runs as any other, its layers that were
    not quantized in fp32;
    ``threads`` is the runtime's thread count (default: torch's,
    ``torch.get_num_threads()``, so that a process that limits torch limits the
    runtime alike; by default both use every core)."""

    def __init__(self, path: str, backend: str = 'onnxruntime',
                 threads: Optional[int] = None, precision: str = 'f32'):
        if precision not in ('f32', 'fp32', 'bf16') or (precision == 'bf16'
                                                       and backend != 'openvino'):
            raise ValueError(f'precision={precision!r} with {backend}: ONNX Runtime takes '
                             f"'fp32', OpenVINO 'fp32' or 'bf16'")
        precision = 'f32' if precision == 'fp32' else precision  # OpenVINO's name
        runtime = require(backend)
        if not osp.isfile(path):
            raise FileNotFoundError(f'{path}: no such exported model (tools/deploy.py writes one)')
        self.backend, self.path = backend, path
        if not threads:
            import torch
            threads = torch.get_num_threads()
        if backend == 'onnxruntime':
            options = runtime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._session = runtime.InferenceSession(path, options,
                                                     providers=['CPUExecutionProvider'])
            self.input_names = [i.name for i in self._session.get_inputs()]
            self.output_names = [o.name for o in self._session.get_outputs()]
        else:
            config = {'INFERENCE_PRECISION_HINT': precision, 'INFERENCE_NUM_THREADS': threads}
            self._compiled = runtime.Core().compile_model(path, 'CPU', config)
            self._request = self._compiled.create_infer_request()
            self.input_names = [i.get_any_name() for i in self._compiled.inputs]
            self.output_names = [o.get_any_name() for o in self._compiled.outputs]

    def _feed(self, inputs: Inputs) -> Dict[str, np.ndarray]:
        """By position, or by name (a dict may hold inputs the model does not
        take: an exporter drops an input the graph does not use)."""
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if not isinstance(inputs, Mapping):
            if len(inputs) != len(self.input_names):
                raise ValueError(f'{self.path} takes {len(self.input_names)} inputs '
                                 f'({", ".join(self.input_names)}), got {len(inputs)}')
            inputs = dict(zip(self.input_names, inputs))
        missing = set(self.input_names) - set(inputs)
        if missing:
            raise ValueError(f'{self.path}: inputs {sorted(missing)} missing '
                             f'(it takes {", ".join(self.input_names)})')
        return {name: np.ascontiguousarray(inputs[name]) for name in self.input_names}

    def __call__(self, inputs: Inputs) -> List[np.ndarray]:
        feed = self._feed(inputs)
        if self.backend == 'onnxruntime':
            return self._session.run(None, feed)
        result = self._request.infer(feed)
        return [np.asarray(result[output]) for output in self._compiled.outputs]


def run_onnxruntime(path: str, inputs: Inputs) -> List[np.ndarray]:
    """The outputs of ONNX Runtime (CPU) on ``inputs`` (an array, a list, or a
    dict by input name)."""
    return Session(path, 'onnxruntime')(inputs)


def run_openvino(path: str, inputs: Inputs) -> List[np.ndarray]:
    """The outputs of OpenVINO (CPU, fp32 inference) on ``inputs``."""
    return Session(path, 'openvino')(inputs)


def to_openvino_ir(onnx_path: str, xml_path: str) -> str:
    """Convert an ONNX file to OpenVINO's IR (``.xml`` + ``.bin``), atomically."""
    return save_openvino(require('openvino').convert_model(onnx_path), xml_path)


def save_openvino(model, xml_path: str) -> str:
    """Write an OpenVINO model as IR (``.xml`` + ``.bin``, weights uncompressed),
    atomically: the ``.xml`` appears only once its ``.bin`` is in place."""
    openvino = require('openvino')
    with written_whole(xml_path, suffix='.xml') as tmp:  # save_model writes .xml + .bin
        tmp_bin, bin_path = tmp[:-len('.xml')] + '.bin', xml_path[:-len('.xml')] + '.bin'
        try:
            openvino.save_model(model, tmp, compress_to_fp16=False)
            os.replace(tmp_bin, bin_path)  # the weights first: the .xml names a whole model
        finally:
            if osp.exists(tmp_bin):
                os.remove(tmp_bin)
    return xml_path
