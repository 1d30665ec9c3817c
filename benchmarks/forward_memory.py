"""Peak memory of one model's forward pass over a manifest's recordings, one at a time: what a
GPU actor or `diarize()` holds for a long file (decoded signal, weights, per-chunk arrays, and
the chunk group's transient tensors), sampled from a background thread every 0.2 s.

    python benchmarks/forward_memory.py --manifest outputs/benchmarks/long7200/manifest.jsonl
        [--model-arg chunk_batch=32]
    python benchmarks/forward_memory.py --manifest outputs/benchmarks/long36000/manifest.jsonl
        --save outputs/exp/long36000.pkl

glibc's allocator can be set from the environment for an experiment, e.g.
`MALLOC_MMAP_THRESHOLD_=1048576` (every allocation over 1 MB in its own mapping) or
`MALLOC_ARENA_MAX=1`. `--save` pickles (rows, outputs, forward seconds) as
`benchmarks.tuning.forward_outputs` returns them, to score clustering choices on them afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import threading
import time


def main(argv=None) -> None:
    from pipeline.corpus.options import model_argument

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--model", default="default")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE", type=model_argument)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save", help="pickle the forward outputs here")
    args = parser.parse_args(argv)

    import psutil
    import torch

    from benchmarks.tuning import forward_outputs
    from pipeline.models import load_model

    torch.set_num_threads(args.threads)
    process, peak = psutil.Process(os.getpid()), [0]

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    from pipeline.errors import UsageError

    try:
        model = load_model(args.model, device="cpu", **dict(args.model_arg))
    except (TypeError, ValueError, UsageError) as error:  # a misspelt or out-of-range --model-arg
        parser.error(f"{error}")
    rows, outputs, seconds = forward_outputs(model, args.manifest)
    audio_seconds = sum(o.num_samples for o in outputs) / 16_000 or None
    print(
        json.dumps(
            {
                "model": args.model,
                "model_args": dict(args.model_arg),
                "forward_seconds": round(seconds, 1),
                "audio_seconds": audio_seconds,
                "peak_rss_gib": round(peak[0] / 2**30, 2),
                "rss_after_gib": round(process.memory_info().rss / 2**30, 2),
                "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
            }
        )
    )
    if args.save:
        with open(args.save, "wb") as f:
            pickle.dump((rows, outputs, seconds), f)


if __name__ == "__main__":
    main()
