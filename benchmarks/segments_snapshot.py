"""Every segment both built-in models give on a split, with known and with estimated counts, as one
JSON file: the check that a refactor changed no label (DER tables round to a tenth of a point).

    python -m benchmarks.segments_snapshot --split test --out before.json        # on the old commit
    python -m benchmarks.segments_snapshot --split test --out after.json         # on the new one
    python -m benchmarks.segments_snapshot --compare before.json after.json      # "identical" or the differences

On a commit before this file existed, run this file from a checkout of the new one with the old
package first on the path (`PYTHONPATH=OLD_CHECKOUT python NEW_CHECKOUT/benchmarks/segments_snapshot.py
--manifests ...`), giving it the split's manifests written by the new checkout."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile


def snapshot(manifests: list[str], models: list[str]) -> dict[str, list[list[str]]]:
    import torch

    from pipeline import load_model

    torch.set_num_threads(2)
    result = {}
    for name in models:
        model = load_model(name, device="cpu")
        for manifest in manifests:
            for estimate in (False, True):
                with tempfile.TemporaryDirectory() as folder:
                    path = absolute_manifest(manifest, folder, drop_counts=estimate)
                    segments = model.diarize(path, batch_size=4, num_workers=0)
                result[
                    f"{name}|{os.path.basename(os.path.dirname(manifest))}/{os.path.basename(manifest)}|{estimate}"
                ] = segments
    return result


def absolute_manifest(manifest: str, folder: str, drop_counts: bool) -> str:
    """A copy of `manifest` with absolute paths (and without `num_speakers` when `drop_counts`)."""
    path = os.path.join(folder, "manifest.jsonl")
    with open(manifest, encoding="utf-8") as rows, open(path, "w", encoding="utf-8") as out:
        for line in rows:
            if not line.strip():
                continue
            row = json.loads(line)
            for key in ("audio_filepath", "rttm_filepath", "uem_filepath"):
                if row.get(key) and not os.path.isabs(row[key]):
                    row[key] = os.path.join(os.path.dirname(os.path.abspath(manifest)), row[key])
            if drop_counts:
                row.pop("num_speakers", None)
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def compare(before: str, after: str) -> int:
    with open(before) as a, open(after) as b:
        old, new = json.load(a), json.load(b)
    differing = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
    for key in differing:
        print(f"differs: {key}")
    print("identical" if not differing else f"{len(differing)} of {len(old | new)} differ")
    return 1 if differing else 0


def main(argv: list[str] | None = None) -> int:
    # benchmarks/ importable when this file runs by path; appended, so PYTHONPATH's package comes first
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.segments_snapshot", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--split", choices=["dev", "test"], help="the split's AMI excerpts, simulated conversations and short calls"
    )
    parser.add_argument("--manifests", nargs="+", help="these manifests instead of a split")
    parser.add_argument("--dest", default="outputs/benchmarks/splits", help="where the split's corpora are written")
    parser.add_argument("--models", nargs="+", default=["default", "ge2e"])
    parser.add_argument("--out", help="the snapshot to write")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    from benchmarks.data import add_data_argument

    add_data_argument(parser)
    args = parser.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    if not args.out or not (args.split or args.manifests):
        parser.error("give --out and --split or --manifests (or --compare BEFORE AFTER)")
    if args.split:
        from benchmarks.splits import split_manifests

        manifests = list(split_manifests(args.split, args.dest).values())
    else:
        manifests = args.manifests
    with open(args.out, "w") as out:
        json.dump(snapshot(manifests, args.models), out)
    print(f"{args.out}: {len(manifests)} manifests x {len(args.models)} models x known/estimated counts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
