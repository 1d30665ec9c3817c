"""Cost of one progress poll (`CommitProgress.update`) on a local output with N committed blocks:
listing `recordings/` when nothing is new, and reading N new parts at once (the worst case).

    PYTHONPATH=. python benchmarks/progress_poll.py 2000"""

import sys
import tempfile
import time

from pipeline.corpus.outputs import OutputLayout
from pipeline.corpus.progress import CommitProgress
from pipeline.corpus.tables import recordings_table

blocks = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
with tempfile.TemporaryDirectory() as folder:
    layout = OutputLayout(folder)
    watcher = CommitProgress(layout, total=blocks * 4, stream=open("/dev/null", "w"))
    rows = [
        {
            "uniq_id": f"r{i}",
            "audio_filepath": "a.wav",
            "manifest": "m",
            "line_number": i,
            "status": "ok",
            "error": "",
            "audio_seconds": 30.0,
            "segments": "",
        }
        for i in range(4)
    ]
    for block in range(blocks):
        layout.write_part("recordings", f"{block:08d}", recordings_table(rows, "default"))
    started = time.perf_counter()
    watcher.update()
    read_all = time.perf_counter() - started
    started = time.perf_counter()
    watcher.update()
    list_only = time.perf_counter() - started
    assert watcher.done == blocks * 4
    print(
        f"{blocks} blocks ({blocks * 4} recordings): first poll reading every part {read_all:.2f} s, "
        f"poll with nothing new {list_only * 1000:.1f} ms"
    )
