"""`ge2e`, the light model: Silero VAD + resemblyzer's GE2E encoder + NME-SC spectral clustering.

The package's top level is torch-free: the registry reads the model's name and its options' check
here, before torch loads; importing `model` (torch) registers the factory."""

from pipeline.models.ge2e.config import check_options

MODEL_NAME = "ge2e"

__all__ = ["MODEL_NAME", "check_options"]
