"""`default`, the overlap-aware model: pyannote segmentation-3.0 + CAM++ + constrained clustering.

The package's top level is torch-free: the registry reads the model's name and its options' check
here, before torch loads; importing `model` (torch) registers the factory."""

from pipeline.models.overlap_aware.config import check_options

MODEL_NAME = "default"

__all__ = ["MODEL_NAME", "check_options"]
