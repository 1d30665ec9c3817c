"""GE2E speaker encoder (Wan et al. 2018) with the weights that ship in `resemblyzer` (`pretrained.pt`).

The network is resemblyzer's: a 3-layer LSTM over 40 mel bands, the last hidden state through a
linear layer and ReLU, L2-normalised. The input features are computed with torchaudio so that they
run batched on CPU or GPU; they reproduce resemblyzer's librosa features (a mel *power*
spectrogram, not log-mel: 25 ms Hann window, 10 ms hop, Slaney mel scale and norm) and its -30 dBFS
volume normalisation, which the tests check against resemblyzer itself.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn
from torch.nn import functional as F

from pipeline.models.weights import package_file

SAMPLE_RATE = 16_000
HOP_SAMPLES = 160  # 10 ms mel frames
WINDOW_FRAMES = 160  # 1.6 s: the partial-utterance length GE2E was trained on
TARGET_DBFS = -30.0


class MelFrontend(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=400,
            win_length=400,
            hop_length=HOP_SAMPLES,
            n_mels=40,
            power=2.0,
            center=True,
            pad_mode="constant",
            norm="slaney",
            mel_scale="slaney",
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, frames, 40) mel power, one frame per 10 ms (frame i centred on sample 160 i)."""
        return self.mel(audio).transpose(1, 2)


def frame_power(audio: torch.Tensor, frame_samples: int) -> torch.Tensor:
    """(B, T) -> (B, ceil(T / frame_samples)) mean power of each frame."""
    return F.avg_pool1d(audio.square()[:, None], frame_samples, frame_samples, ceil_mode=True)[:, 0]


def volume_gain(power: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-recording gain that brings the RMS level to -30 dBFS, never attenuating (resemblyzer's
    `normalize_volume(increase_only=True)`). `power` (B, F) is each frame's mean power; `weights`
    (B, F) in [0, 1] (speech probability, 0 past the end) restricts the level measurement to speech,
    so long silences do not inflate the gain."""
    mean_power = (power * weights).sum(1) / weights.sum(1).clamp_min(1e-6)
    level_db = 10 * torch.log10(mean_power.clamp_min(1e-10))
    return torch.pow(10.0, ((TARGET_DBFS - level_db) / 20).clamp_min(0.0))


class SpeakerEncoder(nn.Module):
    embedding_size = 256

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(40, 256, num_layers=3, batch_first=True)
        self.linear = nn.Linear(256, 256)

    @classmethod
    def pretrained(cls) -> "SpeakerEncoder":
        model = cls()
        checkpoint = torch.load(package_file("resemblyzer", "pretrained.pt"), map_location="cpu", weights_only=True)
        state = {k: v for k, v in checkpoint["model_state"].items() if k.split(".")[0] in ("lstm", "linear")}
        model.load_state_dict(state)
        return model.eval()

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """(N, frames, 40) mel windows -> (N, 256) unit-norm embeddings."""
        _, (hidden, _) = self.lstm(mels)
        return F.normalize(F.relu(self.linear(hidden[-1])), dim=1)

    def embed_windows(self, mels: torch.Tensor, chunk_size: int = 512) -> torch.Tensor:
        """Embeddings of many windows, `chunk_size` at a time to bound activation memory."""
        if len(mels) == 0:
            return mels.new_zeros(0, self.embedding_size)
        return torch.cat([self(chunk) for chunk in mels.split(chunk_size)])
