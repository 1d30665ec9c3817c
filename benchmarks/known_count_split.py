"""Dev split only: does the segmentation tell a voice that a forced count split in two from two close
real voices? For every dev recording with a known count, the default model's clusters forced to that
count, their closest pair (cosine of centroids) and in how many chunks that pair is one local speaker
(the segmentation heard one voice where the clusters say two) or two; beside the recording's DER with
the count forced and estimated up to it. Then the guards "give the count up where the closest pair is
above a cosine and one local speaker in at least a share of the chunks of the smaller cluster", as
the change of each dev corpus's mean per-recording DER against today's guard.

    python -m benchmarks.known_count_split                # the dev corpora of `tuning --more` and the linking corpus
    python -m benchmarks.known_count_split --recordings   # and one line per recording

Forward items come from (and go to) `benchmarks.tuning`'s forward cache. docs/journal/2026-12-07-listeners.md
has what it said."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

import numpy as np
import torch

from benchmarks.data import add_data_argument
from benchmarks.splits import RECURRING_SPLITS, recurring_manifest, split_manifests
from benchmarks.tuning import cached_forward_outputs, score_outputs
from pipeline.models.overlap_aware.clustering import cluster_centroids
from pipeline.models.registry import load_model

# A recording whose DER falls by more than this when its count is estimated up to the known one: a
# voice the forced count split.
SPLIT_GAIN = 0.05


@dataclass
class ForcedPair:
    corpus: str
    uniq_id: str
    count: int
    forced_der: float
    estimated_der: float  # estimated up to the known count
    cosine: float  # of the closest pair of forced clusters
    one_voice_chunks: int  # chunks where one local speaker carries both
    two_voice_chunks: int  # chunks where they are two local speakers
    smaller_chunks: int  # chunks where the rarer of the two is heard

    @property
    def one_voice_share(self) -> float:
        return self.one_voice_chunks / max(self.smaller_chunks, 1)

    @property
    def split(self) -> bool:
        return self.estimated_der < self.forced_der - SPLIT_GAIN


def closest_forced_pair(model, output, corpus: str, forced: float, estimated: float) -> ForcedPair | None:
    count = int(output.num_speakers)
    embeddings, trusted, counted = model.clustering_voters(output)
    centroids, labels = cluster_centroids(embeddings[trusted], model.config.clustering, count, 1, count, counted)
    if len(centroids) < 2:
        return None
    grid = np.full(trusted.shape, -1)
    grid[trusted] = labels
    present = (grid[..., None] == np.arange(len(centroids))).any(1)  # (chunks, local speakers, clusters)
    heard = present.sum(1)  # (chunks, clusters): on how many local speakers
    same = np.einsum("clk,clj->ckj", present, present, dtype=np.int64)
    one_voice = (same > 0).sum(0)
    two_voices = (heard[:, :, None] * heard[:, None, :] - same > 0).sum(0)
    chunks = (heard > 0).sum(0)
    similarity = centroids @ centroids.T
    np.fill_diagonal(similarity, -1.0)
    i, j = np.unravel_index(np.argmax(similarity), similarity.shape)
    return ForcedPair(
        corpus,
        output.uniq_id,
        count,
        forced,
        estimated,
        float(similarity[i, j]),
        int(one_voice[i, j]),
        int(two_voices[i, j]),
        int(min(chunks[i], chunks[j])),
    )


def forced_pairs(model, corpora: dict[str, tuple[list, list]]) -> list[ForcedPair]:
    base = model.config
    pairs = []
    for corpus, (rows, outputs) in corpora.items():
        for row, output in zip(rows, outputs):
            if int(output.num_speakers or 0) < 2:
                continue
            try:
                model.config = replace(base, known_count="exact")
                forced = score_outputs(model, [row], [output], estimate=False)["der"]
                model.config = replace(base, known_split_similarity=-1.0)  # always given up: estimated up to it
                estimated = score_outputs(model, [row], [output], estimate=False)["der"]
            finally:
                model.config = base
            pair = closest_forced_pair(model, output, corpus, forced, estimated)
            if pair is not None:
                pairs.append(pair)
    return pairs


def describe(pairs: list[ForcedPair]) -> str:
    cosine = np.array([p.cosine for p in pairs])
    share = np.array([p.one_voice_share for p in pairs])
    one = np.array([p.one_voice_chunks for p in pairs])
    return (
        f"{len(pairs):3d} recordings: cosine {cosine.min():.2f}-{cosine.max():.2f} (median {np.median(cosine):.2f}); "
        f"one local speaker in {np.mean(one > 0):.0%} of them, in {one.min()}-{one.max()} chunks; "
        f"share of the smaller cluster's chunks median {np.median(share):.2f}"
    )


def guard_table(pairs: list[ForcedPair], today: float, cosines, shares) -> list[str]:
    corpora = sorted({p.corpus for p in pairs})

    def mean_der(corpus: str, gives_up) -> float:
        group = [p for p in pairs if p.corpus == corpus]
        return float(np.mean([p.estimated_der if gives_up(p) else p.forced_der for p in group]))

    lines = ["| guard (also) | " + " | ".join(corpora) + " |", "|---" * (len(corpora) + 1) + "|"]
    for cosine in cosines:
        for share in shares:

            def gives_up(p, cosine=cosine, share=share):
                return p.cosine > today or (p.cosine > cosine and p.one_voice_share >= share)

            changes = [100 * (mean_der(c, gives_up) - mean_der(c, lambda p: p.cosine > today)) for c in corpora]
            lines.append(f"| cosine > {cosine}, share >= {share} | " + " | ".join(f"{d:+.2f}" for d in changes) + " |")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.known_count_split", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dest", default="outputs/benchmarks/splits")
    parser.add_argument("--recordings", action="store_true", help="one line per recording")
    parser.add_argument("--cosines", default="0.65,0.7,0.75")
    parser.add_argument("--shares", default="0.5,0.67,1.0")
    add_data_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model = load_model("default", device="cpu")
    manifests = split_manifests("dev", args.dest, more=True)
    manifests["recurring_dev"] = recurring_manifest("dev", args.dest, RECURRING_SPLITS["dev"])
    corpora = {}
    for corpus, manifest in manifests.items():
        rows, outputs, _ = cached_forward_outputs(model, manifest, args.dest, corpus, "default", {})
        corpora[corpus] = (rows, outputs)
    pairs = forced_pairs(model, corpora)
    if args.recordings:
        for p in pairs:
            print(
                f"{p.corpus:15s} {p.uniq_id[:24]:24s} k={p.count} forced {p.forced_der:6.1%} estimated "
                f"{p.estimated_der:6.1%} cosine {p.cosine:.2f} one voice {p.one_voice_chunks} two {p.two_voice_chunks}"
                f" of {p.smaller_chunks}"
            )
    print("a voice split (estimating up to the count gains over 5 points):", describe([p for p in pairs if p.split]))
    print("the others:                                                  ", describe([p for p in pairs if not p.split]))
    close = [p for p in pairs if not p.split and p.cosine >= 0.7]
    print("the others whose closest pair is at 0.7 or above:            ", describe(close))
    today = model.config.known_split_similarity
    print(f"\nChange of mean per-recording DER (points) against today's guard (cosine > {today}):")
    cosines = [float(c) for c in args.cosines.split(",")]
    shares = [float(s) for s in args.shares.split(",")]
    print("\n".join(guard_table(pairs, today, cosines, shares)))


if __name__ == "__main__":
    main()
