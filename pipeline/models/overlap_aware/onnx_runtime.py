"""The overlap-aware model's two networks on ONNX Runtime: its CPU path.

On a CPU, ONNX Runtime runs the same float32 networks faster than torch (CAM++ about twice as fast
on 2 threads: docs/RESULTS.md, "Speed"). The graphs are exported by the project from its own
modules, so they are the same networks with the same weights (`tests/test_onnx_runtime.py` holds
them within 1e-4 of torch's logits and at cosine >= 0.9999 on embeddings), once per set of weights,
and cached on disk (`cache_dir`): a Ray actor that starts later reads the file instead of exporting.
torch stays the reference, and the path on GPUs and in reduced precision.

Exported, per network, only what has no Python decisions in it: segmentation-3.0 from chunks to
powerset log-probabilities, and CAM++ from fbank features (with each sequence's valid length, and
where it splits in two) to its pooled statistics. What the model does around them (cutting chunks,
choosing frames, fbank, merging statistics, the final dense layer) stays in torch."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import uuid
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.io.checkpoints import cache_root
from pipeline.models.overlap_aware.campplus import CAMPPlus, FrameStatistics
from pipeline.models.overlap_aware.segmentation import SegmentationModel

# Part of every cached graph's name: change it when what is exported changes, so old files are not read.
EXPORT_VERSION = 1
OPSET = 17


def onnx_runtime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cache_dir() -> Path:
    """Where exported graphs are kept: `onnx/` in the project's cache folder."""
    return cache_root() / "onnx"


def weights_digest(module: nn.Module, *extra: object) -> str:
    """A digest of the module's weights, torch's version and what the export takes: the cache key."""
    digest = hashlib.sha256(f"{EXPORT_VERSION} {OPSET} {torch.__version__} {type(module).__name__} {extra}".encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


class _SegmentationGraph(nn.Module):
    def __init__(self, model: SegmentationModel):
        super().__init__()
        self.model = model

    def forward(self, chunks: torch.Tensor) -> torch.Tensor:
        return self.model(chunks)


class _StatisticsGraph(nn.Module):
    def __init__(self, model: CAMPPlus, halves: bool):
        super().__init__()
        self.model, self.halves = model, halves

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, splits: torch.Tensor):
        return tuple(self.model.statistics(features, lengths, splits if self.halves else None))


def exported_graph(
    graph: nn.Module, name: str, digest: str, inputs: tuple, names: dict[str, dict[int, str]], fresh: bool = False
) -> bytes:
    """The ONNX bytes of `graph` traced on `inputs` (input and output names -> their dynamic axes),
    from the cache when there (unless `fresh`), else exported and cached (written under a temporary
    name and renamed, so actors exporting at once never read half a file; a cache that cannot be
    written is skipped)."""
    path = cache_dir() / f"{name}-{digest}.onnx"
    if not fresh:
        with contextlib.suppress(OSError):
            return path.read_bytes()
    buffer = io.BytesIO()
    input_names = [n for n in names if n in _INPUT_NAMES]
    # Out of inference mode whatever the caller's (a forward pass under `torch.inference_mode`), and
    # after one call that fills the module's caches (the sinc filters): they are then traced as the
    # constants they are, and every export gives the same graph.
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes read as Python numbers
        graph.eval()(*inputs)
        torch.onnx.export(
            graph.eval(),
            inputs,
            buffer,
            input_names=input_names,
            output_names=[n for n in names if n not in _INPUT_NAMES],
            dynamic_axes=names,
            opset_version=OPSET,
            dynamo=False,
        )
    data = buffer.getvalue()
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{uuid.uuid4().hex}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
    return data


_INPUT_NAMES = ("chunks", "features", "lengths", "splits")


class OnnxNetworks:
    """Segmentation-3.0 and CAM++'s statistics as ONNX Runtime sessions on `threads` CPU threads,
    made on first use. The torch modules are only read (for their weights and to export them)."""

    def __init__(self, segmentation: SegmentationModel, embedding: CAMPPlus, threads: int | None = None):
        self.segmentation, self.embedding = segmentation, embedding
        self.threads = threads or torch.get_num_threads()
        self._sessions: dict[str, object] = {}

    def _session(self, name: str):
        if name not in self._sessions:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            # Threads that spin between calls hold a core that an actor's neighbours (decode,
            # post-processing) need.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            # No arena: ONNX Runtime's keeps the largest call's buffers for the process's life.
            options.enable_cpu_mem_arena = False
            try:
                session = ort.InferenceSession(self._graph(name), options, providers=["CPUExecutionProvider"])
            except Exception:  # noqa: BLE001 - a damaged cached file (a full disk, an edit): export it again
                session = ort.InferenceSession(
                    self._graph(name, fresh=True), options, providers=["CPUExecutionProvider"]
                )
            self._sessions[name] = session
        return self._sessions[name]

    def digest(self, name: str) -> str:
        """The cache key of graph `name` (`weights_digest`)."""
        if name == "segmentation":
            return weights_digest(self.segmentation)
        return weights_digest(self.embedding, name == "campplus-halves")

    def _graph(self, name: str, fresh: bool = False) -> bytes:
        if name == "segmentation":
            chunks = torch.zeros(2, SegmentationModel.SAMPLE_RATE * int(SegmentationModel.CHUNK_SECONDS))
            return exported_graph(
                _SegmentationGraph(self.segmentation),
                name,
                self.digest(name),
                (chunks,),
                {"chunks": {0: "chunks"}, "log_probs": {0: "chunks"}},
                fresh,
            )
        halves = name == "campplus-halves"
        features, lengths = torch.randn(3, 250, 80), torch.tensor([250, 200, 120])
        sequences = {0: "sequences"}
        return exported_graph(
            _StatisticsGraph(self.embedding, halves),
            name,
            self.digest(name),
            (features, lengths, torch.tensor([100, 50, 60])),
            {
                "features": {0: "sequences", 1: "steps"},
                "lengths": sequences,
                "splits": sequences,
                "mean": sequences,
                "centred_squares": sequences,
                "count": sequences,
            },
            fresh,
        )

    def segment(self, chunks: torch.Tensor) -> torch.Tensor:
        """(G, samples) chunks -> (G, frames, 7) powerset log-probabilities, as `SegmentationModel`."""
        (log_probs,) = self._session("segmentation").run(None, {"chunks": _numpy(chunks)})
        return torch.from_numpy(log_probs)

    def statistics(
        self, features: torch.Tensor, lengths: torch.Tensor, splits: torch.Tensor | None = None
    ) -> FrameStatistics:
        """CAM++'s pooled statistics, as `CAMPPlus.statistics` (with `splits`: of each side apart)."""
        session = self._session("campplus-halves" if splits is not None else "campplus-statistics")
        lengths = torch.as_tensor(lengths).long()
        feed = {"features": _numpy(features), "lengths": lengths.numpy()}
        if splits is not None:
            feed["splits"] = torch.as_tensor(splits).long().numpy()
        wanted = {i.name for i in session.get_inputs()}
        outputs = session.run(None, {k: v for k, v in feed.items() if k in wanted})
        return FrameStatistics(*(torch.from_numpy(o) for o in outputs))


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().to(device="cpu", dtype=torch.float32).numpy())
