"""One public weights file as data: where it lives, which of our networks computes
it (a detector's: which backbone of ours), what its source publishes of it and the
input it expects. :mod:`.catalog` and :mod:`.detectors` hold the entries."""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from ..download import readable_name
from .input_format import IMAGENET_RGB, InputFormat


@dataclass(frozen=True)
class WeightsEntry:
    """One public file.

    Args:
        name: ``'<source>/<file>'``.
        url: the source's own public address.
        type, kwargs: our backbone that computes exactly the source's network.
        layout: the key layout (:data:`mmbackbones.weights.LAYOUTS`), or None
            when the file has the network's own keys (torchvision's ports).
        top1: published ImageNet top-1 (%) and where it is published.
        resolution: the evaluation crop it was published at.
        normalization: the input it was trained on (an
            :class:`~.input_format.InputFormat`: :data:`IMAGENET_RGB`,
            :data:`DETECTRON2_BGR`, ...), which the input check compares with a
            config's data preprocessor.
        filename: its name in the cache (the URL's last part by default).
        default: the source's recommended file for this network.
        sha256: the file's SHA-256 (or a prefix), where the source publishes one
            outside the file's name (torchvision's and OpenMMLab's names carry
            theirs, :func:`mmbackbones.download.published_hash`). Without one,
            the hash of the first download is recorded and checked on every use.
    """
    name: str
    url: str
    type: str
    kwargs: Dict
    layout: Optional[str]
    top1: str
    resolution: int
    normalization: InputFormat = IMAGENET_RGB
    filename: Optional[str] = None
    default: bool = True
    sha256: Optional[str] = None

    @property
    def source(self) -> str:
        return self.name.split('/', 1)[0]

    @property
    def tag(self) -> str:
        return self.name.split('/', 1)[1]

    def cache_name(self) -> str:
        """Its name in the cache: readable, since the catalog's names are unique."""
        return self.filename or readable_name(self.url)

    def config(self) -> str:
        """The backbone config of the network it holds (a detector's: its backbone)."""
        args = ', '.join(f'{k}={v!r}' for k, v in self.kwargs.items())
        return f"dict(type='mmbackbones.{self.type}', {args})"

    def published(self) -> str:
        """What its source publishes of it, for lists."""
        return f'top-1: {self.top1} at {self.resolution} px'

    @property
    def is_detector(self) -> bool:
        return False


@dataclass(frozen=True)
class DetectorEntry(WeightsEntry):
    """A whole detector's public file (COCO): ``type``, ``kwargs`` and ``layout``
    are its backbone's, as for an ImageNet file; the framework's neck and head
    tensors load by name into the configs that rebuild the detector.

    Args:
        top1: unused (no ImageNet figure): ``ap`` holds what the source publishes.
        resolution: the test scale it was published at (the shorter side, or the
            square input of YOLOv3).
        ap: published COCO val2017 AP (box, mask, PQ) and where it is published.
        framework: ``'mmdet'`` or ``'detectron2'``, whose key layout the neck and
            heads are in.
        detector: the architecture, e.g. ``'Faster R-CNN + FPN'``.
        configs: this repository's configs that rebuild it.
        source_config: the source's own config of it.
        licence: the terms the source publishes it under.
    """
    top1: str = ''
    resolution: int = 800
    default: bool = False  # never a backbone's file for its source's name
    ap: str = ''
    framework: str = 'mmdet'
    detector: str = ''
    configs: Tuple[str, ...] = ()
    source_config: str = ''
    licence: str = ''

    def published(self) -> str:
        return f'COCO {self.ap} at {self.resolution} px'

    @property
    def is_detector(self) -> bool:
        return True
