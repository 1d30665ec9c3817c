"""Corpus-wide speaker linking, the algorithm: unit-norm centroids of (recording, speaker) in,
a global speaker label for each out (`link_centroids`). `pipeline.linking.run` applies it to a run's
output.

**The criterion** is average-linkage agglomerative clustering (AHC) on cosine similarity, with a
cannot-link constraint: two groups of speakers merge while the mean cosine similarity between their
members' centroids is at least `threshold`, and never when they hold speakers of the same recording.
For unit vectors the mean pairwise similarity of two groups is the dot product of their (unnormalised)
mean vectors, so a group is summarised exactly by the sum of its centroids and their count: merging
summaries gives the same similarities as merging the members, whatever the order of the rounds below.

**Scale** (`cluster_items`): up to `exact_max` groups are clustered exactly, in one Ray task (a dense
similarity matrix: 4,000 groups = 64 MB). Above that, in rounds: the groups are split into blocks of
about `block_size` by spherical k-means on a sample (an IVF-style coarse quantiser: a speaker's
centroids are close, so they fall in one block, and k-means blocks are the tightest such split),
every block is clustered with the constrained AHC in its own Ray task, and each block's clusters
become the next round's groups (sums and counts, so nothing is approximated but which pairs meet).
The next round's k-means has another seed and fewer, larger groups, so pairs that a block boundary
separated meet again. Rounds go on until the groups fit `exact_max` (then one exact AHC over all of
them settles every remaining pair) or two rounds in a row merge less than 1 % (a corpus with more
distinct speakers than `exact_max`: the result is then approximate at block boundaries). Why not an
ANN graph (HNSW, NN-descent) + graph clustering: single-linkage over a kNN graph chains speakers
together through a few close pairs, and the cannot-link constraint does not fit a connected-components
pass; blocking keeps the exact average-linkage criterion inside blocks with only scikit-learn and Ray.
Memory: the driver holds the centroids (4 bytes x size each, 1 KB for GE2E's 256) and per-block
copies travel through Ray's object store, at most `2 x CPUs` blocks in flight.

**Incremental** (`existing`): speakers linked before keep their global id. Each existing global speaker
enters the clustering as one frozen group (the sum of its members' centroids), and frozen groups can
never merge with each other, so a new speaker either joins an existing global speaker (when it matches
it and that speaker has no speaker of its recording yet) or forms a new one with other new speakers.

**Confidence** of a link: the cosine similarity between the speaker's centroid and its global
speaker's centroid (the renormalised mean of all its members' centroids).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

EXACT_MAX = 4000
BLOCK_SIZE = 2000
MAX_BLOCK = 4000  # a k-means block larger than this is split again
STALE_ROUNDS = 2
MIN_ROUND_GAIN = 0.01
MAX_ROUNDS = 12
COMPACT_ABOVE = 256  # the AHC's matrix is compacted once half its rows are merged away, above this size
REPAIR_SHARED_FRACTION = (
    0.2  # the repair merges two clusters that share at most this share of the smaller one's recordings
)
ASSIGN_CHUNK = 100_000


@dataclass
class Groups:
    """What is being clustered: each group is a set of speakers summarised by the sum of their unit
    centroids, their count, the recordings they come from (disjoint by construction) and whether it
    is an existing global speaker (frozen: never merged with another frozen group)."""

    sums: np.ndarray  # (m, dim) float32
    counts: np.ndarray  # (m,) int64
    rec_indptr: np.ndarray  # (m + 1,) int64
    rec_ids: np.ndarray  # (rec_indptr[-1],) int64: recording codes of each group's members
    frozen: np.ndarray  # (m,) bool

    def __len__(self) -> int:
        return len(self.counts)

    def subset(self, index: np.ndarray) -> "Groups":
        lengths = np.diff(self.rec_indptr)[index]
        starts = self.rec_indptr[index]
        rec_index = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(
            lengths.sum()
        )
        return Groups(
            self.sums[index],
            self.counts[index],
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            self.rec_ids[rec_index],
            self.frozen[index],
        )

    def means(self) -> np.ndarray:
        """Unit-norm mean direction of each group."""
        means = self.sums / self.counts[:, None].astype(np.float32)
        return means / np.linalg.norm(means, axis=1, keepdims=True).clip(1e-12)


def merge_groups(groups: Groups, labels: np.ndarray, k: int) -> Groups:
    """The groups formed by merging `groups` with the same label (0..k-1)."""
    sums = group_sums(groups.sums, labels, k).astype(np.float32)
    counts = np.bincount(labels, weights=groups.counts, minlength=k).astype(np.int64)
    lengths = np.diff(groups.rec_indptr)
    label_of_rec = np.repeat(labels, lengths)
    rec_order = np.argsort(label_of_rec, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(labels, weights=lengths, minlength=k))]).astype(np.int64)
    frozen = np.bincount(labels, weights=groups.frozen, minlength=k) > 0
    return Groups(sums, counts, indptr, groups.rec_ids[rec_order], frozen)


def conflict_matrix(groups: Groups) -> np.ndarray:
    """(m, m) bool: the groups share a recording, or are both frozen."""
    from scipy import sparse

    m = len(groups)
    lengths = np.diff(groups.rec_indptr)
    _, columns = np.unique(groups.rec_ids, return_inverse=True)
    incidence = sparse.csr_matrix(
        (np.ones(len(columns), np.float32), (np.repeat(np.arange(m), lengths), columns)),
        shape=(m, int(columns.max()) + 1 if len(columns) else 0),
    )
    conflicts = (incidence @ incidence.T).toarray() > 0
    if groups.frozen.any():
        frozen = np.flatnonzero(groups.frozen)
        conflicts[np.ix_(frozen, frozen)] = True
    return conflicts


def constrained_ahc(groups: Groups, threshold: float) -> np.ndarray:
    """Average-linkage AHC with cannot-link constraints: labels 0..k-1 (in order of first member).

    The similarity of two groups is the mean cosine similarity of their members, i.e. the dot product
    of their mean vectors; the closest allowed pair merges while it is >= `threshold`. Each row keeps
    its best partner, so a merge costs O(m) plus the rows whose best partner was one of the pair."""
    m = len(groups)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    counts = groups.counts.astype(np.float64)
    means = (groups.sums / counts[:, None]).astype(np.float32)
    similarity = means @ means.T
    conflicts = conflict_matrix(groups)
    np.fill_diagonal(conflicts, True)
    # A forbidden pair is -inf, and stays so: the merged row is a weighted mean, and a mean with a
    # -inf term is -inf, so a group inherits the conflicts of both its parts with no extra bookkeeping.
    similarity[conflicts] = -np.inf
    del conflicts
    parent = np.arange(m)
    ids = np.arange(m)  # the group each row of the (compacted) matrix stands for
    alive = m
    best = similarity.argmax(1)
    best_value = similarity[np.arange(m), best]
    while alive > 1:
        if alive < len(ids) // 2 and len(ids) > COMPACT_ABOVE:
            # Drop the rows and columns of merged-away groups: every later merge touches fewer entries.
            keep = np.flatnonzero(best >= 0)
            similarity = similarity[np.ix_(keep, keep)]
            ids, counts = ids[keep], counts[keep]
            best = similarity.argmax(1)
            best_value = similarity[np.arange(len(keep)), best]
        i = int(best_value.argmax())
        if not best_value[i] >= threshold:
            break
        j = int(best[i])
        row = (counts[i] * similarity[i] + counts[j] * similarity[j]) / (counts[i] + counts[j])  # row[i], row[j]: -inf
        similarity[i], similarity[:, i] = row, row
        similarity[j], similarity[:, j] = -np.inf, -np.inf
        counts[i] += counts[j]
        parent[ids[j]] = ids[i]
        alive -= 1
        best_value[j], best[j] = -np.inf, -1
        stale = np.append(np.flatnonzero((best == i) | (best == j)), i)
        rows = similarity[stale]
        best[stale] = rows.argmax(1)
        best_value[stale] = rows[np.arange(len(stale)), best[stale]]
        better = row > best_value
        best[better], best_value[better] = i, row[better]
    # every member's root, numbered in order of first member
    root = parent.copy()
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    _, first, labels = np.unique(root, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[labels].astype(np.int64)


def cluster_block(groups: Groups, threshold: float) -> np.ndarray:
    """A Ray task's work: one block's labels."""
    return constrained_ahc(groups, threshold)


@dataclass
class Executor:
    """Runs blocks as Ray tasks (at most `in_flight` at once) when Ray is connected, else in-process."""

    use_ray: bool
    in_flight: int = 4
    _remote: Any = field(default=None, repr=False)

    @classmethod
    def create(cls, use_ray: bool | None = None) -> "Executor":
        import ray

        use_ray = ray.is_initialized() if use_ray is None else use_ray
        in_flight = max(2, 2 * int(ray.cluster_resources().get("CPU", 2))) if use_ray else 1
        return cls(use_ray, in_flight)

    def map(self, fn: Callable, argument_lists: Iterable[tuple]) -> list:
        """`fn(*arguments)` for each, in order. `argument_lists` may be a generator: arguments are
        built only as tasks are submitted, so a round's blocks are never all copied at once."""
        if not self.use_ray:
            return [fn(*arguments) for arguments in argument_lists]
        import ray

        if self._remote is None:
            self._remote = {}
        remote = self._remote.setdefault(fn.__name__, ray.remote(num_cpus=1)(fn))
        results: dict[int, Any] = {}
        pending: dict = {}
        count = 0
        for index, arguments in enumerate(argument_lists):
            if len(pending) >= self.in_flight:
                done, _ = ray.wait(list(pending), num_returns=1)
                results[pending.pop(done[0])] = ray.get(done[0])
            pending[remote.remote(*arguments)] = index
            count = index + 1
        for ref, index in pending.items():
            results[index] = ray.get(ref)
        return [results[index] for index in range(count)]


def group_sums(vectors: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, dim) float64 sums of the rows of `vectors` by label (a sparse one-hot product: fast)."""
    from scipy import sparse

    sums = np.zeros((k, vectors.shape[1]), dtype=np.float64)
    for start in range(0, len(labels), ASSIGN_CHUNK):  # in chunks: no float64 copy of all the vectors
        chunk = labels[start : start + ASSIGN_CHUNK]
        onehot = sparse.csr_matrix((np.ones(len(chunk)), (chunk, np.arange(len(chunk)))), shape=(k, len(chunk)))
        sums += onehot @ vectors[start : start + ASSIGN_CHUNK].astype(np.float64)
    return sums


def nearest_centre(vectors: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return (vectors @ centres.T).argmax(1).astype(np.int64)


def partition(means: np.ndarray, block_size: int, seed: int, executor: Executor) -> list[np.ndarray]:
    """Blocks of about `block_size` (at most `MAX_BLOCK`) groups: spherical k-means on a sample,
    every group to its nearest centre (Ray tasks), oversized blocks split again."""
    m = len(means)
    k = max(1, math.ceil(m / block_size))
    rng = np.random.default_rng(seed)
    sample = means[np.sort(rng.choice(m, min(m, max(20 * k, 10_000)), replace=False))]
    centres = spherical_kmeans(sample, k, rng)
    chunks = ((means[start : start + ASSIGN_CHUNK], centres) for start in range(0, m, ASSIGN_CHUNK))
    assignment = np.concatenate(executor.map(nearest_centre, chunks)) if m else np.zeros(0, np.int64)
    order = np.argsort(assignment, kind="stable")
    bounds = np.searchsorted(assignment[order], np.arange(k + 1))
    blocks = []
    for b in range(k):
        block = order[bounds[b] : bounds[b + 1]]
        blocks.extend(
            split_oversized(means, block, block_size, rng) if len(block) > MAX_BLOCK else [block] if len(block) else []
        )
    return blocks


def spherical_kmeans(sample: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 5) -> np.ndarray:
    """`k` unit centres of unit vectors (Lloyd's iterations on cosine; a coarse quantiser needs no more)."""
    from scipy import sparse

    k = min(k, len(sample))
    centres = sample[rng.choice(len(sample), k, replace=False)].copy()
    for _ in range(iterations):
        assignment = nearest_centre(sample, centres)
        onehot = sparse.csr_matrix(
            (np.ones(len(sample), np.float32), (assignment, np.arange(len(sample)))), shape=(k, len(sample))
        )
        sums = np.asarray(onehot @ sample)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        used = norms[:, 0] > 1e-12  # an empty centre keeps its place
        centres[used] = sums[used] / norms[used]
    return centres.astype(np.float32)


def split_oversized(
    means: np.ndarray, block: np.ndarray, block_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """A block too big for one AHC, cut into `block_size` runs along its main direction (the first
    principal component: neighbours stay together)."""
    vectors = means[block] - means[block].mean(0)
    direction = rng.standard_normal(vectors.shape[1]).astype(np.float32)
    for _ in range(8):  # power iteration
        direction = vectors.T @ (vectors @ direction)
        direction /= max(float(np.linalg.norm(direction)), 1e-12)
    ordered = block[np.argsort(vectors @ direction, kind="stable")]
    pieces = math.ceil(len(block) / block_size)
    return [piece for piece in np.array_split(ordered, pieces)]


def cluster_groups(
    groups: Groups,
    threshold: float,
    exact_max: int = EXACT_MAX,
    block_size: int = BLOCK_SIZE,
    seed: int = 0,
    executor: Executor | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """The cluster (0..k-1) of every group, and what each round did."""
    executor = executor or Executor.create()
    labels = np.arange(len(groups), dtype=np.int64)
    current, rounds, stale = groups, [], 0
    while len(current) > exact_max and stale < STALE_ROUNDS and len(rounds) < MAX_ROUNDS:
        started = time.perf_counter()
        blocks = partition(current.means(), block_size, seed + len(rounds), executor)
        block_labels = executor.map(cluster_block, ((current.subset(block), threshold) for block in blocks))
        round_labels, offset = np.empty(len(current), dtype=np.int64), 0
        for block, block_label in zip(blocks, block_labels):
            round_labels[block] = block_label + offset
            offset += int(block_label.max()) + 1 if len(block_label) else 0
        merged = len(current) - offset
        stale = stale + 1 if merged < MIN_ROUND_GAIN * len(current) else 0
        rounds.append(
            {
                "groups": len(current),
                "blocks": len(blocks),
                "largest_block": max(map(len, blocks)),
                "merged": merged,
                "seconds": round(time.perf_counter() - started, 3),
            }
        )
        current = merge_groups(current, round_labels, offset)
        labels = round_labels[labels]
    if len(current) <= exact_max:
        started = time.perf_counter()
        (final,) = executor.map(cluster_block, [(current, threshold)])
        k = int(final.max()) + 1 if len(final) else 0
        rounds.append(
            {
                "groups": len(current),
                "blocks": 1,
                "largest_block": len(current),
                "merged": len(current) - k,
                "seconds": round(time.perf_counter() - started, 3),
                "exact": True,
            }
        )
        labels = final[labels]
    return labels, rounds


class EarlierLinkingBroken(ValueError):
    """The ids of an earlier linking break the cannot-link constraint (an edited links table)."""


@dataclass
class LinkResult:
    labels: np.ndarray  # (N,) int64: global speaker index, -1 for a speaker not linked
    confidence: np.ndarray  # (N,) float32: cosine to the global centroid, NaN when not linked
    centroids: np.ndarray  # (K, dim) float32 unit global centroids
    rounds: list[dict]


def link_centroids(
    centroids: np.ndarray,
    recordings: np.ndarray,
    threshold: float,
    linked: np.ndarray | None = None,
    existing: np.ndarray | None = None,
    exact_max: int = EXACT_MAX,
    block_size: int = BLOCK_SIZE,
    seed: int = 0,
    use_ray: bool | None = None,
) -> LinkResult:
    """Global speaker index of every centroid.

    `centroids` (N, dim) unit vectors; `recordings` (N,) the recording each comes from (any ints or
    strings: no two centroids of one recording share a global speaker); `linked` (N,) bool: which to
    link (the others get -1); `existing` (N,) int64: the global index given by an earlier linking (-1
    for new centroids) — kept as it is, and new centroids join those global speakers where they match.
    New global speakers get the next indices, in order of their first centroid."""
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    n = len(centroids)
    codes = np.unique(np.asarray(recordings), return_inverse=True)[1].astype(np.int64).reshape(-1)
    linked = np.ones(n, dtype=bool) if linked is None else np.asarray(linked, dtype=bool)
    existing = np.full(n, -1, dtype=np.int64) if existing is None else np.asarray(existing, dtype=np.int64)
    linked = linked | (existing >= 0)
    known = int(existing.max()) + 1 if n and existing.max() >= 0 else 0

    # Groups: one per existing global speaker (frozen), then one per new centroid.
    new_points = np.flatnonzero(linked & (existing < 0))
    old_points = np.flatnonzero(existing >= 0)
    group_of_point = np.full(n, -1, dtype=np.int64)
    group_of_point[old_points] = existing[old_points]
    group_of_point[new_points] = known + np.arange(len(new_points))
    points = np.flatnonzero(group_of_point >= 0)
    singletons = Groups(
        centroids[points] if len(points) < n else centroids,
        np.ones(len(points), np.int64),
        np.arange(len(points) + 1, dtype=np.int64),
        codes[points],
        existing[points] >= 0,
    )
    # with no earlier linking every point is its own group already (no copy of the vectors)
    groups = merge_groups(singletons, group_of_point[points], known + len(new_points)) if known else singletons
    for conflict in conflicting_existing(groups, known):
        raise EarlierLinkingBroken(
            f"the earlier linking put two speakers of one recording in global speaker {conflict}"
        )

    present_groups = np.flatnonzero(groups.counts > 0)  # an existing index without members today stays unused
    executor = Executor.create(use_ray)
    clustered = groups if len(present_groups) == len(groups) else groups.subset(present_groups)
    cluster_labels, rounds = cluster_groups(clustered, threshold, exact_max, block_size, seed, executor)
    cluster_of_group = np.full(len(groups), -1, dtype=np.int64)
    cluster_of_group[present_groups] = cluster_labels
    point_cluster = np.full(n, -1, dtype=np.int64)
    point_cluster[points] = cluster_of_group[group_of_point[points]]
    started = time.perf_counter()
    point_cluster, repaired = repair_conflicts(
        centroids, codes, point_cluster, existing, threshold, exact_max, block_size, seed, executor
    )
    rounds.append({"repair": True, "merged": repaired, "seconds": round(time.perf_counter() - started, 3)})

    # Number the clusters: an existing global speaker's index when it holds one (never two: they
    # cannot merge), else new indices in order of first point.
    clusters = int(point_cluster.max()) + 1 if len(points) else 0
    index_of_cluster = np.full(clusters, -1, dtype=np.int64)
    index_of_cluster[point_cluster[old_points]] = existing[old_points]
    fresh = np.flatnonzero(index_of_cluster < 0)
    first_point = np.full(clusters, n, dtype=np.int64)
    np.minimum.at(first_point, point_cluster[points], points)
    fresh = fresh[(first_point[fresh] < n)]
    fresh = fresh[np.argsort(first_point[fresh], kind="stable")]
    index_of_cluster[fresh] = known + np.arange(len(fresh))
    labels = np.full(n, -1, dtype=np.int64)
    labels[points] = index_of_cluster[point_cluster[points]]

    total = known + len(fresh)
    sums = group_sums(centroids[points], labels[points], total)
    global_centroids = (sums / np.linalg.norm(sums, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)
    confidence = np.full(n, np.nan, dtype=np.float32)
    for start in range(0, len(points), ASSIGN_CHUNK):
        chunk = points[start : start + ASSIGN_CHUNK]
        confidence[chunk] = np.einsum("ij,ij->i", centroids[chunk], global_centroids[labels[chunk]])
    return LinkResult(labels, confidence, global_centroids, rounds)


def repair_conflicts(
    centroids: np.ndarray,
    codes: np.ndarray,
    cluster: np.ndarray,
    existing: np.ndarray,
    threshold: float,
    exact_max: int = EXACT_MAX,
    block_size: int = BLOCK_SIZE,
    seed: int = 0,
    executor: Executor | None = None,
    passes: int = 3,
) -> tuple[np.ndarray, int]:
    """Merge two clusters that are similar enough (mean cosine >= `threshold`) but were kept apart
    only because they share a recording, by keeping, for each shared recording, the member closer to
    the merged centroid and giving the other a cluster of its own.

    Why: a recording whose diarization split one voice into two speakers puts one of the pieces in
    each of two clusters; the cannot-link constraint then keeps the whole of both clusters apart (a
    voice split in two global ids across the corpus). After the repair only the weaker piece is
    apart. Existing links (`existing >= 0`) are never moved, and two clusters that both hold existing
    global speakers never merge. Returns the new cluster of every point (-1 stays -1) and the merges."""
    executor = executor or Executor.create(False)
    cluster = cluster.copy()
    merges = 0
    for pass_number in range(passes):
        points = np.flatnonzero(cluster >= 0)
        if not len(points):
            break
        _, cluster[points] = np.unique(cluster[points], return_inverse=True)
        k = int(cluster[points].max()) + 1
        sums = group_sums(centroids[points], cluster[points], k)
        counts = np.bincount(cluster[points], minlength=k).astype(np.float64)
        holds_existing = np.bincount(cluster[points], weights=existing[points] >= 0, minlength=k) > 0
        pairs = similar_conflicting_pairs(
            sums,
            counts,
            codes[points],
            cluster[points],
            holds_existing,
            threshold,
            exact_max,
            block_size,
            seed + 100 + pass_number,
            executor,
        )
        if not pairs:
            break
        members = np.split(points[np.argsort(cluster[points], kind="stable")], np.cumsum(counts.astype(np.int64))[:-1])
        touched = np.zeros(k, dtype=bool)
        next_cluster = k
        merged_now = 0
        for _, a, b in pairs:
            if touched[a] or touched[b]:
                continue
            keep, eject = resolve_pair(centroids, codes, existing, members[a], members[b])
            if keep is None:
                continue
            side_a = np.isin(keep, members[a])
            sum_a, sum_b = (
                centroids[keep[side_a]].sum(0, dtype=np.float64),
                centroids[keep[~side_a]].sum(0, dtype=np.float64),
            )
            if not side_a.any() or side_a.all() or sum_a @ sum_b / (side_a.sum() * (~side_a).sum()) < threshold:
                continue
            cluster[keep] = a
            for point in eject:
                cluster[point] = next_cluster
                next_cluster += 1
            touched[a] = touched[b] = True
            merged_now += 1
        merges += merged_now
        if not merged_now:
            break
    points = np.flatnonzero(cluster >= 0)
    if len(points):
        _, cluster[points] = np.unique(cluster[points], return_inverse=True)
    return cluster, merges


def resolve_pair(centroids: np.ndarray, codes: np.ndarray, existing: np.ndarray, a: np.ndarray, b: np.ndarray):
    """The members of a ∪ b to keep (one per shared recording: an existing link if there is one, else
    the one closer to the merged centroid) and those to eject; (None, None) when the conflict cannot
    be resolved without moving an existing link."""
    both = np.concatenate([a, b])
    centre = centroids[both].sum(0, dtype=np.float64)
    centre /= max(float(np.linalg.norm(centre)), 1e-12)
    order = np.lexsort(
        (-(centroids[both] @ centre), existing[both] < 0, codes[both])
    )  # by recording: existing first, then closest
    ordered = both[order]
    first = np.concatenate([[True], codes[ordered][1:] != codes[ordered][:-1]])
    keep, eject = ordered[first], ordered[~first]
    if (existing[eject] >= 0).any():
        return None, None
    return np.sort(keep), eject


def similar_conflicting_pairs(
    sums: np.ndarray,
    counts: np.ndarray,
    codes: np.ndarray,
    cluster_of_point: np.ndarray,
    holds_existing: np.ndarray,
    threshold: float,
    exact_max: int,
    block_size: int,
    seed: int,
    executor: Executor,
) -> list[tuple[float, int, int]]:
    """(similarity, a, b) for the clusters with mean cosine >= threshold that share a recording, but
    few (at most `REPAIR_SHARED_FRACTION` of the smaller cluster's recordings, at least one: two
    voices heard together in many recordings are two people, not a diarization split), and do not
    both hold existing global speakers; most similar first; in blocks when there are many."""
    from scipy import sparse

    k = len(counts)
    incidence = sparse.csr_matrix(
        (np.ones(len(codes), np.float32), (cluster_of_point, codes)), shape=(k, int(codes.max()) + 1)
    )
    means = (sums / counts[:, None]).astype(np.float32)
    if k <= exact_max:
        blocks = [np.arange(k)]
    else:
        unit = means / np.linalg.norm(means, axis=1, keepdims=True).clip(1e-12)
        blocks = partition(unit, block_size, seed, executor)
    found = executor.map(
        block_conflict_pairs, ((means[block], incidence[block], holds_existing[block], threshold) for block in blocks)
    )
    pairs = [
        (float(sim), int(block[i]), int(block[j]))
        for block, block_pairs in zip(blocks, found)
        for sim, i, j in block_pairs
    ]
    return sorted(pairs, key=lambda p: (-p[0], p[1], p[2]))


def block_conflict_pairs(
    means: np.ndarray, incidence, holds_existing: np.ndarray, threshold: float
) -> list[tuple[float, int, int]]:
    """A Ray task's work for `similar_conflicting_pairs`: the pairs of one block."""
    similarity = means @ means.T
    shared = (incidence @ incidence.T).toarray()
    members = np.asarray(incidence.sum(1)).ravel()
    allowed = np.maximum(1.0, REPAIR_SHARED_FRACTION * np.minimum(members[:, None], members[None, :]))
    candidate = np.triu((similarity >= threshold) & (shared > 0) & (shared <= allowed), 1)
    candidate &= ~(holds_existing[:, None] & holds_existing[None, :])
    i, j = np.nonzero(candidate)
    return [(float(similarity[a, b]), int(a), int(b)) for a, b in zip(i, j)]


def conflicting_existing(groups: Groups, known: int) -> list[int]:
    """Existing global speakers that hold two speakers of one recording (a corrupt earlier linking)."""
    end = int(groups.rec_indptr[known]) if known else 0
    owner = np.repeat(np.arange(known, dtype=np.int64), np.diff(groups.rec_indptr[: known + 1]))
    pairs = np.stack([owner, groups.rec_ids[:end]], axis=1)
    unique, count = np.unique(pairs, axis=0, return_counts=True) if end else (np.zeros((0, 2), np.int64), np.zeros(0))
    return sorted(set(unique[count > 1, 0].tolist()))
