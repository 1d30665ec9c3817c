"""The corpus plan's sink: one Ray `Datasink` that writes a block's RTTMs and its rows of the three
Parquet tables, in the commit order `OutputLayout` documents (RTTMs, segments, speakers, recordings
last; a block without speaker centroids writes no speakers part).

One sink rather than three writes because Ray Data runs one sink per execution, and writing the
tables from the same block is what lets a recordings part vouch for the files of its block.

Rows the model stage deferred (a batch the model failed entirely, see `stages.DiarizeForward`) are
not committed with their block: they come back to the driver and are committed as error rows once
the whole plan has finished. A run stopped for a broken model thus leaves them unrecorded, and
`--resume` redoes them."""

from __future__ import annotations

import uuid
from typing import Any, Iterable

from ray.data.block import Block, BlockAccessor
from ray.data.datasource import Datasink
from ray.data.datasource.datasink import WriteResult

from pipeline.corpus.lease import LeaseFence
from pipeline.corpus.outputs import OutputLayout
from pipeline.corpus.status import DEFERRED, ERROR, OK
from pipeline.corpus.tables import recordings_table, segments_table, speakers_table, turns_of
from pipeline.io.rttm import rttm_text


class CorpusSink(Datasink[list]):
    def __init__(self, layout: OutputLayout, model_name: str, fence: LeaseFence):
        self.layout = layout
        self.model_name = model_name
        self.fence = fence

    def get_name(self) -> str:
        return "WriteRTTMAndParquet"

    def write(self, blocks: Iterable[Block], ctx: Any) -> list[dict]:
        rows = [row for block in blocks for row in BlockAccessor.for_block(block).to_arrow().to_pylist()]
        deferred = [row for row in rows if row["status"] == DEFERRED]
        rows = [row for row in rows if row["status"] != DEFERRED]
        if rows:
            self.commit(rows)
        return [{**row, "status": ERROR} for row in deferred]

    def commit(self, rows: list[dict]) -> None:
        self.fence.check()  # a writer left by a killed run stops here once --resume took the output over
        for row in rows:
            if row["status"] == OK:
                text = rttm_text(row["uniq_id"], turns_of(row))
                self.layout.write_atomically(self.layout.rttm_path(row["uniq_id"]), text.encode("utf-8"))
        token = uuid.uuid4().hex
        self.layout.write_part("segments", token, segments_table(rows, self.model_name))
        speakers = speakers_table(rows, self.model_name)
        if speakers is not None:
            self.layout.write_part("speakers", token, speakers)
        with self.fence.held():  # the commit record: written only while the lease names this run
            self.layout.write_part("recordings", token, recordings_table(rows, self.model_name))

    def on_write_complete(self, write_result: WriteResult[list]) -> None:
        deferred = [row for returned in write_result.write_returns for row in returned]
        if deferred:
            self.commit(deferred)
