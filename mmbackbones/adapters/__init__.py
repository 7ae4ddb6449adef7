"""Adapters to other detection frameworks. Import the one you need, e.g.
``import mmbackbones.adapters.detectron2``; ``import mmbackbones`` imports none."""
