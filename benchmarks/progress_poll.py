"""Cost of one progress poll (`CommitProgress.update`) on a local output with N committed blocks:
listing `recordings/` when nothing is new, and reading N new parts at once (the worst case); with
`--tallies`, also what the model actors' tallies cost on a local Ray (`progress.ForwardTally`): a
publish, and the poll's read of 1 and 8 actors' tallies.

    PYTHONPATH=. python benchmarks/progress_poll.py 2000
    PYTHONPATH=. python benchmarks/progress_poll.py 2000 --tallies"""

import sys
import tempfile
import time

from pipeline.corpus.outputs import OutputLayout
from pipeline.corpus.progress import CommitProgress, ForwardTally, forget_tallies, forward_tallies
from pipeline.corpus.tables import recordings_table


def per_call_ms(call, repeats: int = 200) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - started) / repeats * 1000


def measure_tallies() -> None:
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    key = "forwarded/progress-poll-benchmark/"
    for actors in (1, 8):
        tallies = [ForwardTally(key) for _ in range(actors)]
        for tally in tallies:
            tally.handed(4, 120.0)
            tally.publish()
        publish, read = per_call_ms(tallies[0].publish), per_call_ms(lambda: forward_tallies(key))
        print(f"{actors} model actors: a publish {publish:.2f} ms, a poll's read of the tallies {read:.2f} ms")
        forget_tallies(key)


blocks = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 2000
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
if "--tallies" in sys.argv:
    measure_tallies()
