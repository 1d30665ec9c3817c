"""`default`, the overlap-aware model: pyannote segmentation-3.0 + CAM++ + constrained clustering."""
