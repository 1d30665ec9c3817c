"""The contract between a model and the pipeline, written once.

A model is a `SpkDiarizationMixin` (`pipeline.api`). The same two hooks run in `diarize()` and in a
corpus run on Ray, where they run in different processes (forward on the model actors, often a GPU;
output processing in CPU tasks, on another copy of the model built by the same factory):

    RecordingBatch --_diarize_forward--> [ForwardItem] * B --_diarize_results--> [RecordingResult] * B

- `_diarize_forward(batch: RecordingBatch)` returns exactly B items, one per recording, **in batch
  order**, each a `ForwardItem` (a model subclasses it with its own arrays; any picklable object
  works). It must not write into `batch.audio`: a batch of one shares the decoded recording's memory
  (read-only in a corpus run), so that a 10-hour file is held once, not copied. Items hold numpy
  arrays and plain values, never CUDA tensors or handles: the corpus pipeline pickles each and hands
  it to output processing in another process, and may run a recording in a smaller batch than it
  came in (one by one to find a failing file, halves after an out-of-memory error), so an item must
  not depend on its batch neighbours.
- `_diarize_results(items, uniq_ids, diarcfg)` returns one `RecordingResult` per item: its turns as
  NeMo's `"begin end speaker_k"` strings on the file's timeline (the item's `offset` added), the
  per-frame speaker activity, and each speaker's embedding centroid when the model has embeddings.
  It must not need the GPU. NeMo's `_diarize_output_processing` is derived from it (a NeMo-style
  model may implement that hook instead; it then gives no embeddings).
- An exception in either hook fails the recordings of that call: in a corpus run they become error
  rows ("model forward failed: ...") unless every batch fails the same way, which stops the run.
- What the pipeline needs to know of a model it reads from class attributes (`ModelTraits`), never
  from the model's name: `frame_seconds` (the step of its per-frame activity), `embedding_size` (of
  its speaker centroids; None without embeddings) and `linking_threshold` (the cosine similarity at
  which `link-speakers` merges its speakers, chosen on a dev split; None: one learnt from the corpus) and
  `exclusive_output` (True when its output processing gives one-speaker-at-a-time turns itself for
  `diarcfg.exclusive`, as a pyannote pipeline does; else the pipeline derives them from the turns and
  activity).
- A forward that works through a long batch in steps may call `report_forward_progress(done)` with
  the share of the batch's audio it has been through (0-1): a corpus run shows it on its progress
  line before the batch is committed (hours of audio in one batch would otherwise show nothing). A
  model that does not call it is counted when its forward returns.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch

# {"speaker_k": (unit-norm centroid float32 (embedding_size,), number of embeddings averaged)}
Centroids = dict[str, tuple[np.ndarray, int]]


@dataclass
class Recording:
    """One decoded recording: what `diarize()`'s DataLoader and the corpus run's decode stage give."""

    uniq_id: str
    audio: np.ndarray  # (T,) float32, 16 kHz mono: the row's offset/duration slice
    offset: float = 0.0  # seconds: where the slice starts on its file's timeline
    num_speakers: int = 0  # the known count, 0 = unknown


@dataclass
class RecordingBatch:
    """The padded batch `_diarize_forward` takes (the same in `diarize()` and on the Ray actors)."""

    audio: torch.Tensor  # (B, T) float32, 16 kHz mono, zero past each recording's length; never written into
    audio_lengths: torch.Tensor  # (B,) int64 samples
    offsets: torch.Tensor  # (B,) float64 seconds: each slice's start on its file's timeline
    num_speakers: torch.Tensor  # (B,) int64 known count, 0 = unknown
    uniq_ids: list[str]  # (B,)

    @classmethod
    def collate(cls, recordings: Sequence[Recording]) -> "RecordingBatch":
        """Pad recordings into one batch. A batch of one is a view of its recording, not a copy (a
        10-hour file is 2.3 GB)."""
        lengths = [len(r.audio) for r in recordings]
        if len(recordings) == 1:
            audio = _as_tensor(recordings[0].audio)[None]
        else:
            audio = torch.zeros(len(recordings), max(lengths, default=0), dtype=torch.float32)
            for i, recording in enumerate(recordings):
                audio[i, : lengths[i]] = _as_tensor(recording.audio)
        return cls(
            audio=audio,
            audio_lengths=torch.tensor(lengths, dtype=torch.long),
            offsets=torch.tensor([r.offset for r in recordings], dtype=torch.float64),
            num_speakers=torch.tensor([int(r.num_speakers or 0) for r in recordings], dtype=torch.long),
            uniq_ids=[r.uniq_id for r in recordings],
        )

    def to(self, device: torch.device | str | None) -> "RecordingBatch":
        if device is None:
            return self
        return replace(self, audio=self.audio.to(device), audio_lengths=self.audio_lengths.to(device))

    def __len__(self) -> int:
        return len(self.uniq_ids)

    def __getitem__(self, key: str) -> Any:
        """`batch["audio"]`: models written against the dict batch of earlier versions keep working."""
        if key not in {f.name for f in fields(self)}:
            raise KeyError(key)
        return getattr(self, key)


@dataclass
class ForwardItem:
    """What `_diarize_forward` gives for one recording: these fields carried through for output
    processing elsewhere, plus the model's own arrays (a subclass)."""

    uniq_id: str
    offset: float  # seconds, added back to the turns
    num_speakers: int  # the known count, 0 = unknown
    num_samples: int  # the recording's length at 16 kHz


@dataclass
class RecordingResult:
    """What output processing gives for one recording."""

    segments: list[str]  # NeMo's "begin end speaker_k", seconds on the file's timeline, by start
    activity: Optional[torch.Tensor] = None  # (1, frames, speakers), columns in speaker_k order
    speaker_embeddings: Centroids = field(default_factory=dict)  # one per speaker of `segments`


@dataclass(frozen=True)
class ModelTraits:
    """What a model declares to the pipeline, as class attributes of the same names."""

    frame_seconds: Optional[float] = None
    embedding_size: Optional[int] = None
    linking_threshold: Optional[float] = None
    exclusive_output: Optional[bool] = None  # True: `_diarize_results` honours `exclusive` itself

    @classmethod
    def of(cls, model: Any) -> "ModelTraits":
        """The traits a model (or its class, or a factory) declares; None for what it does not."""
        return cls(**{f.name: getattr(model, f.name, None) for f in fields(cls)})


_FORWARD_PROGRESS: ContextVar[Optional[Callable[[float], None]]] = ContextVar("forward_progress", default=None)


def report_forward_progress(done: float) -> None:
    """Inside `_diarize_forward`: the share (0-1) of the batch's audio gone through so far. Outside a
    corpus run's model actor, nothing listens and this does nothing."""
    listener = _FORWARD_PROGRESS.get()
    if listener is not None:
        listener(min(max(float(done), 0.0), 1.0))


@contextmanager
def forward_progress(listener: Callable[[float], None]) -> Iterator[None]:
    """`report_forward_progress` calls inside the block go to `listener` (the model actor's tally)."""
    token = _FORWARD_PROGRESS.set(listener)
    try:
        yield
    finally:
        _FORWARD_PROGRESS.reset(token)


def move_to_device(batch: Any, device: torch.device | str | None) -> Any:
    """A batch on `device`: a `RecordingBatch`, or the dicts/lists/tensors of a user's own DataLoader."""
    if device is None:
        return batch
    if isinstance(batch, (RecordingBatch, torch.Tensor)):
        return batch.to(device)
    if isinstance(batch, dict):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(value, device) for value in batch)
    return batch


def nemo_output(results: Sequence[RecordingResult], diarcfg: Any) -> Any:
    """Results in the shape NeMo's `_diarize_output_processing` returns: the segment lists, or a
    tuple with the per-frame tensors (`include_tensor_outputs`) and/or the speaker centroids per file
    (`return_embeddings`, this project's addition), in that order."""
    segments = [list(result.segments) for result in results]
    extra = []
    if getattr(diarcfg, "include_tensor_outputs", False):
        extra.append([result.activity for result in results])
    if getattr(diarcfg, "return_embeddings", False):
        extra.append([dict(result.speaker_embeddings) for result in results])
    return (segments, *extra) if extra else segments


def results_from_nemo(returned: Any, count: int) -> list[RecordingResult]:
    """What a NeMo-style `_diarize_output_processing` returned, as results (no embeddings)."""
    segments, tensors = (returned[0], returned[1]) if isinstance(returned, tuple) else (returned, [None] * count)
    return [RecordingResult(list(s), t) for s, t in zip(segments, tensors)]


def _as_tensor(samples: np.ndarray) -> torch.Tensor:
    """float32 samples as a tensor sharing their memory. Arrays from Ray's object store are
    read-only; models never write into their input batch, so torch's warning about it is moot."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(np.asarray(samples, dtype=np.float32))
