"""A row's `status` as it moves through the corpus plan, in one place.

    OK ──decode fails──────────────► ERROR   (the row's own reason; committed with its block)
    OK ──forward fails on the row──► ERROR
    OK ──forward fails on its whole batch, the same way──► DEFERRED ──end of the run──► ERROR
    OK ──post-processing fails─────► ERROR
    OK ──labelled──────────────────► OK      (its RTTM and table rows are written)

Rows that are errors from the start (a bad manifest line, a bad id, a local audio file that is not
there: `inputs.with_local_audio_checked`) never reach decode. On a resume,
the id pass also gives each record whose manifest line no longer holds its row as an ORPHAN (the line
was edited or removed): it is never written, and a row to do at an orphan's line is refused (the line
would be recorded twice). A DEFERRED
row is held back from its block's commit (`sinks.CorpusSink`) and committed as an ERROR once the
whole plan has finished, so that a run stopped for a broken model (`pipeline.errors.ModelKeepsFailing`)
leaves it unrecorded and `--resume` redoes it. Only OK and ERROR are ever written."""

OK = "ok"
ERROR = "error"
DEFERRED = "deferred"
ORPHAN = "orphan"
