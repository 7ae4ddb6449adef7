import pytest
import torch

from mmbackbones import list_variants

VARIANTS = list_variants()


def pytest_configure(config):
    torch.set_num_threads(2)


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
