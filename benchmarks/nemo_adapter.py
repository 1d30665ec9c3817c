"""The NeMo Sortformer adapter against NeMo's own `diarize()`, one after the other in one process, on
the same files: real-time factor of each and whether their turns agree. The `.nemo` is a small
random-weight Sortformer (FastConformer + Transformer + Sortformer head, NVIDIA's v1 layout at a
fraction of its size) built from its config and saved by NeMo's own `save_to`
(`tests/test_nemo_sortformer.py` uses the same archive): a speed and parity check, not an accuracy
figure.

    python -m benchmarks.nemo_adapter                        # AMI test excerpts, batch sizes 1 and 5
    python -m benchmarks.nemo_adapter --batch-sizes 1,8 --device cuda --repeat 8"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def tiny_sortformer_config(streaming: bool = False) -> dict:
    """NVIDIA's `sortformer_diarizer_hybrid_loss_4spk-v1.yaml` model section, shrunk (1 conformer and 1
    transformer layer, 64/32 wide); inference-relevant fields only."""
    return {
        "sample_rate": 16000,
        "pil_weight": 0.5,
        "ats_weight": 0.5,
        "max_num_of_spks": 4,
        "streaming_mode": streaming,
        "model_defaults": {"fc_d_model": 64, "tf_d_model": 32},
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "normalize": "per_feature",
            "window_size": 0.025,
            "sample_rate": 16000,
            "window_stride": 0.01,
            "window": "hann",
            "features": 80,
            "n_fft": 512,
            "frame_splicing": 1,
            "dither": 0.00001,
        },
        "sortformer_modules": {
            "_target_": "nemo.collections.asr.modules.sortformer_modules.SortformerModules",
            "num_spks": 4,
            "dropout_rate": 0.5,
            "fc_d_model": 64,
            "tf_d_model": 32,
            # Streaming (v2.x): 3.2 s chunks, a speaker cache and a FIFO of 40 frames each, so that a
            # 30 s file streams through nine chunks and the cache is compressed several times.
            **(
                {"spkcache_len": 40, "fifo_len": 40, "chunk_len": 40, "spkcache_update_period": 40} if streaming else {}
            ),
        },
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConformerEncoder",
            "feat_in": 80,
            "feat_out": -1,
            "n_layers": 1,
            "d_model": 64,
            "subsampling": "dw_striding",
            "subsampling_factor": 8,
            "subsampling_conv_channels": 16,
            "causal_downsampling": False,
            "ff_expansion_factor": 2,
            "self_attention_model": "rel_pos",
            "n_heads": 2,
            "att_context_size": [-1, -1],
            "att_context_style": "regular",
            "xscaling": True,
            "untie_biases": True,
            "pos_emb_max_len": 5000,
            "conv_kernel_size": 9,
            "conv_norm_type": "batch_norm",
            "conv_context_size": None,
            "dropout": 0.1,
            "dropout_pre_encoder": 0.1,
            "dropout_emb": 0.0,
            "dropout_att": 0.1,
        },
        "transformer_encoder": {
            "_target_": "nemo.collections.asr.modules.transformer.transformer_encoders.TransformerEncoder",
            "num_layers": 1,
            "hidden_size": 32,
            "inner_size": 64,
            "num_attention_heads": 2,
            "attn_score_dropout": 0.5,
            "attn_layer_dropout": 0.5,
            "ffn_dropout": 0.5,
            "hidden_act": "relu",
            "pre_ln": False,
            "pre_ln_final_layer_norm": True,
        },
        "loss": {"_target_": "nemo.collections.asr.losses.bce_loss.BCELoss", "weight": None, "reduction": "mean"},
    }


def write_tiny_sortformer(path: Path, seed: int = 0, streaming: bool = False) -> Path:
    """A random-weight Sortformer saved with NeMo's `save_to` at `path` (a `.nemo`). A random network's
    speaker posteriors sit near 0.5 and barely move in time; its last layer is rescaled so that, on a
    seeded noise probe, each speaker's logit has mean 0 and standard deviation 3: turns then start
    and end within a file, and a frame is rarely at the threshold (where a rounding would flip it)."""
    from nemo.collections.asr.models import SortformerEncLabelModel
    from omegaconf import OmegaConf

    torch.manual_seed(seed)
    model = SortformerEncLabelModel(cfg=OmegaConf.create(tiny_sortformer_config(streaming))).eval()
    head = model.sortformer_modules.single_hidden_to_spks
    generator = torch.Generator().manual_seed(seed)
    probe = torch.randn(1, 16000 * 20, generator=generator) * (1 + torch.sin(torch.arange(16000 * 20) / 4000.0))
    with torch.no_grad():
        logits = torch.logit(model.forward(audio_signal=probe, audio_signal_length=torch.tensor([probe.shape[1]]))[0])
        mean, spread = logits.mean(dim=0), logits.std(dim=0).clamp_min(1e-6)
        head.weight.mul_((3.0 / spread)[:, None])
        head.bias.copy_((head.bias - mean) * 3.0 / spread)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save_to(str(path))
    return path


def nemo_diarize(model, paths: list[str], batch_size: int = 1) -> list[list[str]]:
    return [sorted(s) for s in model.diarize(audio=paths, batch_size=batch_size, verbose=False)]


def main() -> None:
    from benchmarks.data import TEST_EXCERPTS, adapter_arguments, ami_dir

    args = adapter_arguments(__doc__)

    from nemo.collections.asr.models import SortformerEncLabelModel

    from pipeline import load_model

    checkpoint = write_tiny_sortformer(Path(tempfile.mkdtemp()) / "tiny_sortformer.nemo")
    files = [str(ami_dir() / f"{name}.wav") for name in TEST_EXCERPTS] * args.repeat
    seconds = sum(sf.info(f).duration for f in files)
    reference = SortformerEncLabelModel.restore_from(str(checkpoint), map_location=args.device).eval()
    nemo_diarize(reference, files[:1])
    started = time.perf_counter()
    expected = nemo_diarize(reference, files)
    print(f"NeMo diarize(), batch 1: RTF {(time.perf_counter() - started) / seconds:.4f}")
    batched = nemo_diarize(reference, files, batch_size=len(TEST_EXCERPTS))
    print(f"NeMo diarize(), batch {len(TEST_EXCERPTS)}: turns equal to its batch 1: {batched == expected}")

    model = load_model("nemo", device=args.device, checkpoint=str(checkpoint))
    arrays = [np.ascontiguousarray(sf.read(f, dtype="float32")[0]) for f in files]
    model.diarize(arrays[:1], batch_size=1, num_workers=0)
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        started = time.perf_counter()
        segments = model.diarize(arrays, batch_size=batch_size, num_workers=0)
        rtf = (time.perf_counter() - started) / seconds
        same = [sorted(s) for s in segments] == expected
        print(f"adapter, batch {batch_size}: RTF {rtf:.4f}, turns equal to NeMo's batch-1 diarize(): {same}")


if __name__ == "__main__":
    main()
