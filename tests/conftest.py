import os

# No test reaches beyond this machine: a download from the internet (a config naming
# public weights, timm's Hub) fails at once, here and in the tools' subprocesses.
# tests/test_weights_by_name.py unsets it and downloads from a server on 127.0.0.1.
os.environ['MMBACKBONES_OFFLINE'] = os.environ['HF_HUB_OFFLINE'] = '1'

import pytest  # noqa: E402
import torch  # noqa: E402

from mmbackbones import list_variants  # noqa: E402

VARIANTS = list_variants()


def pytest_configure(config):
    # under pytest-xdist (make test runs -n auto) each worker gets its share of the
    # cores: two 2-thread workers on 2 cores stall each other's OpenMP barriers
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', 1))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config, items):
    # the long end-to-end runs first, so that pytest-xdist's workers finish together
    # instead of one of them starting the demo last
    items.sort(key=lambda item: item.get_closest_marker('slow') is None)


@pytest.fixture(params=sorted(VARIANTS))
def variant(request):
    """Every named variant of every registered family: (name, class name, kwargs)."""
    cls_name, kwargs = VARIANTS[request.param]
    return request.param, cls_name, kwargs


@pytest.fixture(scope='session')
def digits_root(tmp_path_factory):
    """The embedded classification demo data, generated once per test session."""
    from mmbackbones.datasets import make_digits_classification
    root = tmp_path_factory.mktemp('data') / 'digits'
    make_digits_classification(str(root))
    return str(root)


@pytest.fixture(scope='session')
def det_root(tmp_path_factory):
    """The embedded detection demo data (COCO layout), generated once per test session."""
    from mmbackbones.datasets import make_digits_detection
    root = tmp_path_factory.mktemp('data') / 'digits_det'
    make_digits_detection(str(root))
    return str(root)
