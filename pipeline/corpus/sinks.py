"""The corpus plan's sink: one Ray `Datasink` that writes a block's RTTMs and its rows of the two
Parquet tables, in the commit order `OutputLayout` documents (RTTMs, segments, recordings last).

One sink rather than three writes because Ray Data runs one sink per execution, and writing the
tables from the same block is what lets a recordings part vouch for the files of its block."""

from __future__ import annotations

import uuid
from typing import Any, Iterable

from ray.data.block import Block, BlockAccessor
from ray.data.datasource import Datasink

from ..rttm import rttm_text
from .outputs import OutputLayout
from .tables import recordings_table, segments_table, turns_of


class CorpusSink(Datasink[int]):
    def __init__(self, layout: OutputLayout, model_name: str):
        self.layout = layout
        self.model_name = model_name

    def get_name(self) -> str:
        return "WriteRTTMAndParquet"

    def write(self, blocks: Iterable[Block], ctx: Any) -> int:
        rows = [row for block in blocks for row in BlockAccessor.for_block(block).to_arrow().to_pylist()]
        if not rows:
            return 0
        for row in rows:
            if row["status"] == "ok":
                text = rttm_text(row["uniq_id"], turns_of(row))
                self.layout.write_atomically(self.layout.rttm_path(row["uniq_id"]), text.encode("utf-8"))
        token = uuid.uuid4().hex
        self.layout.write_part("segments", token, segments_table(rows, self.model_name))
        self.layout.write_part("recordings", token, recordings_table(rows, self.model_name))
        return len(rows)
