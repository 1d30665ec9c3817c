"""The neural parts against their reference implementations, with the packaged weights."""

import numpy as np
import torch
from helpers import AMI, LIBRISPEECH

from pipeline.io.audio import decode_audio
from pipeline.models.ge2e.clustering import spectral_cluster
from pipeline.models.ge2e.encoder import MelFrontend, SpeakerEncoder, frame_power, volume_gain
from pipeline.models.ge2e.vad import FRAME_SAMPLES, SileroVAD


def test_batched_vad_matches_the_streaming_silero_model():
    import silero_vad

    threads = torch.get_num_threads()
    reference = silero_vad.load_silero_vad()  # importing silero_vad sets torch to 1 thread
    torch.set_num_threads(threads)
    audio = torch.from_numpy(decode_audio(str(AMI / "trn03.wav")))[: 312 * FRAME_SAMPLES]
    with torch.inference_mode():
        ours = SileroVAD.pretrained()(audio[None])[0]
        streamed = torch.cat([reference(chunk[None], 16_000)[:, 0] for chunk in audio.split(FRAME_SAMPLES)])
    assert ours.shape == streamed.shape
    assert torch.allclose(ours, streamed, atol=1e-4)
    assert (ours > 0.5).float().mean() > 0.5  # trn03 is mostly speech


def test_encoder_matches_resemblyzer_within_1e_4_cosine():
    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram

    threads = torch.get_num_threads()
    wav = decode_audio(str(next(LIBRISPEECH.glob("*.flac"))))
    normalized = normalize_volume(wav, -30, increase_only=True)
    reference_encoder = VoiceEncoder("cpu", verbose=False)
    torch.set_num_threads(threads)
    _, reference_partials, slices = reference_encoder.embed_utterance(normalized, return_partials=True)

    audio = torch.from_numpy(wav)[None]
    power = frame_power(audio, 160)
    mel = MelFrontend()(audio * volume_gain(power, torch.ones_like(power))[:, None])[0]
    reference_mel = torch.from_numpy(wav_to_mel_spectrogram(normalized))
    assert torch.allclose(mel[: len(reference_mel)], reference_mel, rtol=1e-3, atol=1e-6 * float(reference_mel.max()))

    padded = torch.nn.functional.pad(mel, (0, 0, 0, 160))
    windows = torch.stack([padded[s.start // 160 : s.start // 160 + 160] for s in slices])
    with torch.inference_mode():
        ours = SpeakerEncoder.pretrained()(windows).numpy()
    cosine = (ours * reference_partials).sum(1)
    assert cosine.min() > 1 - 1e-4


def test_spectral_clustering_finds_well_separated_speakers():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 64))
    embeddings = np.concatenate([c + 0.15 * rng.normal(size=(40, 64)) for c in centres])
    labels = spectral_cluster(embeddings)
    assert len(set(labels)) == 3
    for block in np.split(labels, 3):
        assert len(set(block)) == 1
    assert len(set(spectral_cluster(embeddings, num_speakers=2))) == 2
    assert len(set(spectral_cluster(embeddings[:40]))) == 1


def test_long_form_clustering_agrees_with_direct_clustering():
    from dataclasses import replace

    from pipeline.models.ge2e.clustering import ClusteringConfig

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 64))
    truth = rng.integers(0, 4, size=3000)
    embeddings = centres[truth] + 0.3 * rng.normal(size=(3000, 64))
    long_form = spectral_cluster(
        embeddings, config=replace(ClusteringConfig(), max_direct_windows=500, long_form_chunk=400)
    )
    from sklearn.metrics import adjusted_rand_score

    assert len(set(long_form)) == 4
    assert adjusted_rand_score(truth, long_form) > 0.99


def test_vad_chunking_does_not_change_probabilities():
    audio = torch.from_numpy(decode_audio(str(AMI / "trn03.wav")))[None].repeat(2, 1)
    vad = SileroVAD.pretrained()
    with torch.inference_mode():
        assert torch.allclose(vad(audio, chunk_frames=100_000), vad(audio, chunk_frames=64), atol=1e-5)


def test_ge2e_forward_removes_each_recordings_dc_offset_a_stretch_at_a_time():
    """The GE2E model never copies its batch whole: each stretch is read less its recording's DC
    offset and zero past its length. In a padded batch of two recordings with offsets, read in
    stretches of 7 s, the VAD gives what each recording gives alone, and the embeddings are those
    of the same batch without offsets."""
    from dataclasses import replace

    from pipeline.models import load_model
    from pipeline.models.contract import Recording, RecordingBatch
    from pipeline.models.ge2e.vad import centred_stretch

    audio = torch.arange(10, dtype=torch.float32)[None].repeat(2, 1)
    stretch = centred_stretch(audio, -2, 12, torch.tensor([10, 6]), torch.tensor([1.0, 2.0]))
    np.testing.assert_array_equal(stretch[1].numpy(), [0, 0, -2, -1, 0, 1, 2, 3, 0, 0, 0, 0, 0, 0])

    model = load_model("ge2e", device="cpu")
    speech = decode_audio(str(AMI / "trn03.wav"))
    short = speech[: len(speech) // 3]
    alone = [
        model._diarize_forward(RecordingBatch.collate([Recording(name, samples)]))[0]
        for name, samples in (("long", speech), ("short", short))
    ]
    model.config = replace(model.config, embedding_chunk_seconds=7.0)
    clean = model._diarize_forward(RecordingBatch.collate([Recording("long", speech), Recording("short", short)]))
    offset = model._diarize_forward(
        RecordingBatch.collate([Recording("long", speech + 0.3), Recording("short", short - 0.2)])
    )
    for one, without, other in zip(alone, clean, offset):
        np.testing.assert_allclose(one.speech_probs, other.speech_probs, atol=1e-3)
        np.testing.assert_array_equal(without.window_starts, other.window_starts)
        a, b = without.embeddings, other.embeddings
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert len(cosine) > 10 and cosine.min() > 0.999


def test_the_same_embeddings_get_the_same_count_and_labels_every_time():
    """ARPACK's random start vector and the rounding between a fragmented graph's zero eigenvalues once
    gave one short call three speakers or six from one run to the next (docs/journal/2026-12-08-*)."""
    from pipeline.models.ge2e.clustering import _pruned_laplacian, _smallest_eigenpairs, cosine_affinity

    rng = np.random.default_rng(2)
    centres = rng.normal(size=(3, 64))
    embeddings = np.concatenate([c + 0.6 * rng.normal(size=(29, 64)) for c in centres])  # 87 windows: ARPACK's size
    fragmented = _pruned_laplacian(np.argsort(-cosine_affinity(embeddings), axis=1), 2)
    first_values, _ = _smallest_eigenpairs(fragmented, 9)
    for _ in range(3):
        np.testing.assert_array_equal(_smallest_eigenpairs(fragmented, 9)[0], first_values)
    first = spectral_cluster(embeddings)
    for _ in range(3):
        np.testing.assert_array_equal(spectral_cluster(embeddings), first)
