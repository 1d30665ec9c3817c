"""`ge2e`, the light model: Silero VAD + resemblyzer's GE2E encoder + NME-SC spectral clustering."""
