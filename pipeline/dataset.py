"""Recordings as a torch Dataset and the padded batch every model's `_diarize_forward` receives.

The same batch layout is built by the DataLoader of `diarize()` and by the Ray pipeline's model
actors (`collate_recordings` on decoded rows), so a model sees one input format everywhere."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .audio import decode_audio
from .manifest import ManifestRow


class DiarizationDataset(Dataset):
    """Decodes each row's `offset`/`duration` slice to 16 kHz mono (NeMo re-reads from 0, #14977)."""

    def __init__(self, rows: Sequence[ManifestRow], storage_options: dict | None = None):
        self.rows = list(rows)
        self.storage_options = storage_options

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        samples = decode_audio(row.audio_filepath, row.offset, row.duration, self.storage_options)
        return recording_item(row.uniq_id, samples, row.offset, row.num_speakers)


def recording_item(uniq_id: str, samples: np.ndarray, offset: float = 0.0, num_speakers: int | None = None) -> dict:
    return {"uniq_id": uniq_id, "audio": samples, "offset": float(offset), "num_speakers": num_speakers or 0}


def collate_recordings(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad a list of recordings into one batch:
    `audio` (B, T) float32, `audio_lengths` (B,) samples, `offsets` (B,) seconds,
    `num_speakers` (B,) with 0 for unknown, `uniq_ids` list of B strings."""
    lengths = [len(item["audio"]) for item in items]
    if len(items) == 1:  # nothing to pad: a view of the recording, not a copy (a 10-hour file is 2.3 GB)
        audio = as_tensor(items[0]["audio"])[None]
    else:
        audio = torch.zeros(len(items), max(lengths, default=0), dtype=torch.float32)
        for i, item in enumerate(items):
            audio[i, : lengths[i]] = as_tensor(item["audio"])
    return {
        "audio": audio,
        "audio_lengths": torch.tensor(lengths, dtype=torch.long),
        "offsets": torch.tensor([item["offset"] for item in items], dtype=torch.float64),
        "num_speakers": torch.tensor([int(item["num_speakers"] or 0) for item in items], dtype=torch.long),
        "uniq_ids": [item["uniq_id"] for item in items],
    }


def as_tensor(samples) -> torch.Tensor:
    """float32 samples as a tensor sharing their memory. Arrays from Ray's object store are
    read-only; models never write into their input batch, so torch's warning about it is moot."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(np.asarray(samples, dtype=np.float32))


def move_to_device(batch: Any, device: torch.device | str | None) -> Any:
    if device is None:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(value, device) for value in batch)
    return batch
