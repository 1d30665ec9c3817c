"""`python -m pipeline manifest`: a NeMo manifest for audio that has none (folders, globs, files; local
or S3), references paired by name; and audio given to `diarize --manifest` refused in one line that
names that command, before Ray starts or the output is touched."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest
import soundfile as sf
from conftest import AMI, FAST_MODEL
from helpers import encode_with_ffmpeg

from pipeline.cli import main
from pipeline.io.audio import decode_audio
from pipeline.io.manifest import expand_manifests, read_manifest


def row(audio, rttm=None, uem=None, num_speakers=None) -> dict:
    return {
        "audio_filepath": str(audio),
        "offset": 0.0,
        "duration": None,
        "label": "infer",
        "text": "-",
        "num_speakers": num_speakers,
        "rttm_filepath": rttm and str(rttm),
        "uem_filepath": uem and str(uem),
    }


@pytest.fixture
def audio_corpus(tmp_path):
    """Audio at two depths (WAV, and FLAC written from an excerpt), a file that is no audio, and the
    references in folders of their own: one RTTM named after no audio file."""
    corpus, references, uems = tmp_path / "corpus", tmp_path / "refs", tmp_path / "uems"
    (corpus / "day1" / "room b").mkdir(parents=True)
    references.mkdir()
    uems.mkdir()
    shutil.copy(AMI / "trn01.wav", corpus / "day1" / "trn01.wav")
    audio, rate = sf.read(AMI / "trn02.wav")
    sf.write(corpus / "day1" / "room b" / "trn02.flac", audio, rate)
    (corpus / "day1" / "notes.txt").write_text("not audio\n")
    for name in ("trn01", "trn02"):
        shutil.copy(AMI / f"{name}.rttm", references / f"{name}.rttm")
    shutil.copy(AMI / "trn03.rttm", references / "trn03.rttm")
    shutil.copy(AMI / "trn01.uem", uems / "trn01.uem")
    return corpus, references, uems


def test_a_folder_of_audio_becomes_a_manifest_that_a_run_labels_and_scores(local_ray, audio_corpus, tmp_path, capfd):
    corpus, references, uems = audio_corpus
    manifest = tmp_path / "calls.jsonl"
    command = ["manifest", str(corpus), "--rttm", f"{references}/*.rttm", "--uem", str(uems), "--output", str(manifest)]
    assert main([*command, "--num-speakers", "2"]) == 0
    printed = capfd.readouterr()
    assert "manifest: 2 recordings (2 with an RTTM, 1 with a UEM)" in printed.out
    assert f"next: python -m pipeline diarize --manifest {manifest} --output OUTPUT" in printed.out
    assert "1 RTTM file named after no audio file" in printed.err and "trn03.rttm" in printed.err
    lines = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    assert lines == [
        row(corpus / "day1" / "room b" / "trn02.flac", references / "trn02.rttm", None, 2),
        row(corpus / "day1" / "trn01.wav", references / "trn01.rttm", uems / "trn01.uem", 2),
    ]
    assert [r.uniq_id for r in read_manifest(str(manifest))] == ["trn02", "trn01"]

    assert main(command) == 2, "an existing manifest is kept"
    assert "exists: pass --force to replace it" in capfd.readouterr().err
    assert len(manifest.read_text(encoding="utf-8").splitlines()) == 2

    output = tmp_path / "run"
    assert (
        main(["diarize", "--manifest", str(manifest), "--output", str(output), "--model", FAST_MODEL, "--evaluate"])
        == 0
    )
    printed = capfd.readouterr().out
    assert "2 input rows: 2 ok, 0 errors" in printed and "OVERALL (2)" in printed
    assert sorted(p.name for p in (output / "rttm").iterdir()) == ["trn01.rttm", "trn02.rttm"]


def test_references_lying_beside_the_audio_are_named_with_the_flags_that_pair_them(tmp_path, capfd):
    """NeMo's script pairs only the references it is given: ones found among the audio are not guessed
    into the manifest, but the note names them and the flags that pair them."""
    folder = tmp_path / "meetings"
    folder.mkdir()
    for name in ("trn01", "trn02"):
        for suffix in ("wav", "rttm", "uem"):
            shutil.copy(AMI / f"{name}.{suffix}", folder / f"{name}.{suffix}")
    manifest = tmp_path / "m.jsonl"
    assert main(["manifest", str(folder), "--rttm", str(folder), "--output", str(manifest)]) == 0
    printed = capfd.readouterr()
    assert "(2 with an RTTM, 0 with a UEM)" in printed.out
    assert (
        f"note: 2 UEM files lie among the audio, not paired; to pair them by name, add: --uem {folder}" in printed.err
    )
    assert "RTTM" not in printed.err, "the RTTMs were asked for"
    assert (
        main(
            ["manifest", str(folder), "--rttm", str(folder), "--uem", str(folder), "--output", str(manifest), "--force"]
        )
        == 0
    )
    printed = capfd.readouterr()
    assert "(2 with an RTTM, 2 with a UEM)" in printed.out and "note:" not in printed.err
    assert [r.uem_filepath for r in read_manifest(str(manifest))] == [
        str(folder / "trn01.uem"),
        str(folder / "trn02.uem"),
    ]


def test_audio_on_s3_becomes_a_compressed_manifest_on_s3(s3_endpoint, tmp_path, capfd):
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    fs.mkdir("calls")
    for key, source in {
        "audio/2026/trn01.wav": AMI / "trn01.wav",
        "audio/2026/trn05.wav": AMI / "trn05.wav",
        "audio/index.csv": AMI / "trn01.rttm",
        "refs/trn05.rttm": AMI / "trn05.rttm",
    }.items():
        fs.put(str(source), f"calls/{key}")
    output = "s3://calls/manifests/all.jsonl.gz"
    command = ["manifest", "s3://calls/audio/", "--rttm", "s3://calls/refs/*.rttm", "--output", output]
    options = {"endpoint_url": s3_endpoint}
    assert main([*command, "--endpoint-url", s3_endpoint]) == 0
    assert "manifest: 2 recordings (1 with an RTTM, 0 with a UEM)" in capfd.readouterr().out
    lines = [json.loads(line) for line in gzip.decompress(fs.cat_file("calls/manifests/all.jsonl.gz")).splitlines()]
    assert lines == [
        row("s3://calls/audio/2026/trn01.wav"),
        row("s3://calls/audio/2026/trn05.wav", "s3://calls/refs/trn05.rttm"),
    ]

    import pipeline  # the same from Python: one URI or a list of them, a glob too

    written = pipeline.manifest_for_audio(
        "s3://calls/audio/2026/*.wav", output, rttm=["s3://calls/refs/"], force=True, storage_options=options
    )
    assert list(written.rows()) == lines and written.unpaired("rttm") == []


@pytest.mark.parametrize("given", ["file", "folder", "glob"])
def test_audio_given_as_a_manifest_is_one_line_naming_the_manifest_command(audio_corpus, tmp_path, capfd, given):
    corpus, _, _ = audio_corpus
    uri = {"file": corpus / "day1" / "trn01.wav", "folder": corpus / "day1", "glob": corpus / "day1" / "*"}[given]
    output = tmp_path / "run"
    assert main(["diarize", "--manifest", str(uri), "--output", str(output)]) == 2
    (line,) = capfd.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: --manifest {uri}: ")
    assert line.endswith(f"python -m pipeline manifest '{uri}' --output manifest.jsonl")
    assert not output.exists(), "refused before the output was made"


def test_audio_under_a_manifest_s_name_is_said_to_be_audio(tmp_path):
    """A manifest name with audio in it (a copy gone wrong) is one error row saying so, not "UTF-16"."""
    from pipeline.corpus.inputs import encoding_problem

    head = (AMI / "trn01.wav").read_bytes()[:4096]
    assert encoding_problem(head, "m.jsonl") == (
        "m.jsonl: this is WAV audio, not a manifest; write a manifest for the audio with python -m pipeline manifest"
    )
    speech = decode_audio(str(AMI / "trn01.wav"))[:16_000]
    for suffix, container, codec, kind in (("m4a", "mp4", "aac", "MP4/M4A"), ("webm", "webm", "libopus", "WebM")):
        encoded = encode_with_ffmpeg(speech, tmp_path / f"a.{suffix}", container, codec, 48_000)
        assert f"this is {kind}" in encoding_problem(encoded.read_bytes()[:4096], "m.jsonl")


def test_audio_files_a_shell_expanded_for_manifest_name_their_folder(audio_corpus, tmp_path, capfd):
    """`--manifest calls/*.wav` unquoted: many audio files arrive; the command named is for their folder."""
    corpus, _, _ = audio_corpus
    audio = [str(corpus / "day1" / "trn01.wav"), str(corpus / "day1" / "room b" / "trn02.flac")]
    assert main(["diarize", "--manifest", *audio, "--output", str(tmp_path / "run")]) == 2
    assert capfd.readouterr().err.strip() == (
        "error: --manifest got 2 audio files among 2 URIs (a shell's unquoted glob?); --manifest takes NeMo "
        f"manifests (JSON Lines). Write one for the audio with: python -m pipeline manifest '{corpus / 'day1'}' "
        "--output manifest.jsonl"
    )


def test_a_folder_of_manifests_is_read_as_the_manifests_in_it(tmp_path):
    for name in ("b.jsonl.gz", "a.jsonl", "README.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "c.jsonl").write_bytes(b"")
    assert expand_manifests([str(tmp_path)]) == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl.gz")]


def test_what_the_manifest_command_refuses(audio_corpus, tmp_path, capfd):
    corpus, references, _ = audio_corpus
    (references / "again").mkdir()
    shutil.copy(references / "trn01.rttm", references / "again" / "trn01.rttm")
    refusals = {
        ("--rttm", str(references)): "two RTTM files are named 'trn01'",
        ("--rttm", str(tmp_path / "gone")): f"not found: {tmp_path / 'gone'}",
        ("--uem", str(references)): f"no UEM (.uem) in {references}",
        ("--rttm", str(corpus / "day1" / "trn01.wav")): f"{corpus / 'day1' / 'trn01.wav'} is not RTTM (.rttm)",
        ("--num-speakers", "0"): "--num-speakers 0: give a count of at least 1",
    }
    for extra, reason in refusals.items():
        assert main(["manifest", str(corpus), "--output", str(tmp_path / "m.jsonl"), *extra]) == 2, extra
        assert reason in capfd.readouterr().err, extra
    named_rttm = str(references / "trn01.rttm")  # what an unquoted `--rttm refs/*.rttm` leaves among the audio
    assert main(["manifest", str(corpus), named_rttm, "--output", str(tmp_path / "m.jsonl")]) == 2
    assert f"{named_rttm} is not audio (.wav, .flac, .mp3, .ogg, ...)" in capfd.readouterr().err
    assert main(["manifest", str(corpus), "--output", str(tmp_path / "m.csv")]) == 2
    assert "a manifest is named *.jsonl" in capfd.readouterr().err
    assert main(["manifest", str(references), "--output", str(tmp_path / "m.jsonl")]) == 2
    assert f"no audio (.wav, .flac, .mp3, .ogg, ...) in {references}" in capfd.readouterr().err
    assert not (tmp_path / "m.jsonl").exists()
