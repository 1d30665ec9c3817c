"""Speaker clustering: normalized maximum eigengap spectral clustering (NME-SC, Park et al. 2019,
the algorithm of NeMo's clustering diarizer), which estimates the number of speakers.

For each candidate pruning value p, the cosine affinity keeps each row's p strongest neighbours;
the graph Laplacian's eigengaps give a speaker count and a confidence; the p with the smallest
(p / N) / normalized gap wins. The k smallest eigenvectors are then clustered with k-means.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.linalg import eigh
from scipy.sparse.linalg import ArpackError, eigsh
from sklearn.cluster import AgglomerativeClustering, KMeans

from pipeline.models.ge2e.config import ClusteringConfig

_DENSE_BELOW = 64  # graphs up to this size are solved densely
# A normalised eigengap below this is rounding between the zero eigenvalues of a graph in more pieces than
# speakers (a small p): it says nothing of the count, and its argmax moves from run to run.
_NO_GAP = 1e-8


def _start_vector(n: int) -> np.ndarray:
    """ARPACK's first Lanczos vector, fixed: its own is random, and the same embeddings then gave
    another count in another process."""
    return np.random.default_rng(0).standard_normal(n)


def cosine_affinity(embeddings: np.ndarray) -> np.ndarray:
    normed = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-8)
    affinity = normed @ normed.T
    low, high = affinity.min(), affinity.max()
    return (affinity - low) / max(high - low, 1e-8)  # NeMo's min-max scaling


def _pruned_laplacian(neighbours: np.ndarray, p: int) -> sparse.csc_matrix:
    """Laplacian of the graph that keeps each row's p strongest neighbours (`neighbours`: columns
    by decreasing affinity) as 1, symmetrised. Sparse: p entries per row."""
    n = len(neighbours)
    binary = sparse.csr_matrix((np.ones(n * p), (np.repeat(np.arange(n), p), neighbours[:, :p].ravel())), shape=(n, n))
    graph = 0.5 * (binary + binary.T)
    graph.setdiag(0.0)
    graph.eliminate_zeros()
    return (sparse.diags(np.asarray(graph.sum(1)).ravel()) - graph).tocsc()


def _smallest_eigenpairs(laplacian: sparse.csc_matrix, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The `count` smallest eigenpairs: shift-invert Lanczos on the sparse Laplacian (exact, and
    far cheaper than a dense O(N^3) solve), dense for small graphs."""
    n = laplacian.shape[0]
    count = min(count, n)
    if n > _DENSE_BELOW and count < n - 1:
        try:
            values, vectors = eigsh(laplacian, k=count, sigma=-1e-2, which="LM", v0=_start_vector(n))
        except ArpackError:  # no convergence on a badly fragmented graph (tiny p), or no shifts: solve it densely
            pass
        else:
            order = np.argsort(values)
            return values[order], vectors[:, order]
    return eigh(laplacian.toarray(), subset_by_index=[0, count - 1])


def _largest_eigenvalue(laplacian: sparse.csc_matrix) -> float:
    if laplacian.shape[0] > _DENSE_BELOW:
        try:
            start = _start_vector(laplacian.shape[0])
            return float(eigsh(laplacian, k=1, which="LA", return_eigenvectors=False, v0=start)[0])
        except ArpackError:
            pass
    return float(eigh(laplacian.toarray(), eigvals_only=True)[-1])


def _eigengap_count(laplacian: sparse.csc_matrix, max_speakers: int, known: int | None = None) -> tuple[int, float]:
    """Speaker count at the largest gap among the smallest eigenvalues (or the `known` count), and
    that count's gap normalised by the largest eigenvalue of the whole spectrum (as NeMo does: a
    fragmented graph has tiny gaps relative to it, so over-pruned p values lose). With a known
    count the pruning is chosen for the graph that best separates exactly that many groups."""
    values, _ = _smallest_eigenpairs(laplacian, max_speakers + 1)
    gaps = np.diff(values)
    k = known if known is not None else int(np.argmax(gaps)) + 1
    return k, float(gaps[k - 1] / max(_largest_eigenvalue(laplacian), 1e-10))


def spectral_cluster(
    embeddings: np.ndarray, num_speakers: int | None = None, config: ClusteringConfig | None = None
) -> np.ndarray:
    """Speaker label (0..k-1) of each embedding; `num_speakers` fixes k, else it is estimated in
    1..`config.max_num_speakers`."""
    config = config or ClusteringConfig()
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if num_speakers is not None and num_speakers <= 1 or n < 2:
        return np.zeros(n, dtype=np.int64)
    if num_speakers is None and n < config.min_windows_for_estimate:
        return np.zeros(n, dtype=np.int64)
    if n > config.max_direct_windows:
        return _long_form_cluster(embeddings, num_speakers, config)
    if num_speakers is not None and n < config.min_windows_for_spectral:
        # A few dozen windows (a short recording) with a dominant speaker: forcing k spectral
        # clusters splits that speaker (AMI excerpts: 50 % DER); average-linkage AHC keeps small
        # speakers as their own clusters (35 %). Estimated counts keep NME-SC.
        k = min(num_speakers, n)
        return (
            AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average")
            .fit_predict(embeddings)
            .astype(np.int64)
        )

    max_k = min(num_speakers or config.max_num_speakers, n - 1)
    # The pruning search solves one eigenproblem per candidate p; above `max_search_windows` it runs
    # on an evenly spaced subset of the windows and the chosen p is scaled back up.
    stride = -(-n // config.max_search_windows)
    p, estimated_k = _nme_search(embeddings[::stride], max_k, num_speakers, config)
    p = min(max(2, p * stride), n - 1)
    k = max(1, min(num_speakers if num_speakers is not None else estimated_k, n))
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    neighbours = np.argsort(-cosine_affinity(embeddings), axis=1)
    _, vectors = _smallest_eigenpairs(_pruned_laplacian(neighbours, p), k)
    return KMeans(n_clusters=k, n_init=10, random_state=config.seed).fit_predict(vectors).astype(np.int64)


def _nme_search(embeddings: np.ndarray, max_k: int, known: int | None, config: ClusteringConfig) -> tuple[int, int]:
    """NME-SC's choice of pruning value p (smallest (p / N) / normalised eigengap) and the speaker
    count at that p."""
    n = len(embeddings)
    neighbours = np.argsort(-cosine_affinity(embeddings), axis=1)
    max_k = min(max_k, n - 1)
    max_p = max(2, int(np.floor(n * config.max_rp_threshold)))
    candidates = np.unique(np.linspace(1, max_p, min(config.sparse_search_volume, max_p)).astype(int))
    candidates = candidates[candidates >= 2] if len(candidates) > 1 else candidates
    best, counts = None, []
    for p in candidates:
        k, normalized_gap = _eigengap_count(_pruned_laplacian(neighbours, int(p)), max_k, known=known and max_k)
        if normalized_gap > _NO_GAP:
            counts.append(k)
        score = (p / n) / (normalized_gap + 1e-10)
        if best is None or score < best[0]:
            best = (score, int(p), k)
    if config.majority_vote_count and known is None and counts:
        values, votes = np.unique(counts, return_counts=True)
        return best[1], int(values[np.argmax(votes)])  # ties: the smallest count, as torch.mode in NeMo
    return best[1], best[2]


def _long_form_cluster(embeddings: np.ndarray, num_speakers: int | None, config: ClusteringConfig) -> np.ndarray:
    """NeMo's long-form idea: summarise each chunk of consecutive windows by k-means centroids,
    cluster all centroids with NME-SC, and give each window its centroid's speaker. Nothing of
    size N x N is ever built, so hours of audio cluster in bounded memory."""
    centroids, window_to_centroid = [], np.empty(len(embeddings), dtype=np.int64)
    for begin in range(0, len(embeddings), config.long_form_chunk):
        chunk = embeddings[begin : begin + config.long_form_chunk]
        count = min(config.centroids_per_chunk, len(chunk))
        kmeans = KMeans(n_clusters=count, n_init=1, random_state=config.seed).fit(chunk)
        window_to_centroid[begin : begin + len(chunk)] = kmeans.labels_ + sum(len(c) for c in centroids)
        centroids.append(kmeans.cluster_centers_)
    centroid_labels = spectral_cluster(np.concatenate(centroids), num_speakers, config)
    return centroid_labels[window_to_centroid]
