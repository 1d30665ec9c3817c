"""Recordings as a torch Dataset: what `diarize()`'s DataLoader reads, one decoded `Recording` per
manifest row, collated by `RecordingBatch.collate` (`pipeline.models.contract`)."""

from __future__ import annotations

from typing import Sequence

from torch.utils.data import Dataset

from pipeline.io.audio import decode_audio
from pipeline.io.manifest import ManifestRow
from pipeline.models.contract import Recording


class DiarizationDataset(Dataset):
    """Decodes each row's `offset`/`duration` slice to 16 kHz mono (NeMo re-reads from 0, #14977)."""

    def __init__(self, rows: Sequence[ManifestRow], storage_options: dict | None = None):
        self.rows = list(rows)
        self.storage_options = storage_options

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Recording:
        row = self.rows[index]
        samples = decode_audio(row.audio_filepath, row.offset, row.duration, self.storage_options)
        return Recording(row.uniq_id, samples, float(row.offset), row.num_speakers or 0)
