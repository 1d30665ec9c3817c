"""What a person sees from the CLI: one `error:` line and exit code 2 for each user mistake, and a
terminal's progress bar. (A clean Ctrl-C that prints the `--resume` command, and a resumed run whose
stderr holds only progress lines: `test_faults_run`.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import AMI, REPO, ami_rows, with_absolute_paths, write_jsonl


def cli_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "AWS_PROFILE")}
    env.update(PYTHONPATH=str(REPO), AWS_EC2_METADATA_DISABLED="true", **extra)
    return env


def run_cli(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_error_line(result: subprocess.CompletedProcess, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def assert_checkpoint_refused(tmp_path, model: str, make, words) -> None:
    """`diarize --model MODEL [--checkpoint <make(folder)>]` ends in one error line with `words`, and
    writes nothing (the checkpoint is checked before Ray starts)."""
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    checkpoint = make(folder)
    manifest = write_jsonl(tmp_path / "m.jsonl", [with_absolute_paths(r) for r in ami_rows("trn03")])
    args = ["diarize", "--manifest", str(manifest), "--output", str(tmp_path / "out"), "--model", model]
    assert_one_error_line(run_cli(*args, *(["--checkpoint", str(checkpoint)] if checkpoint else [])), *words)
    assert not (tmp_path / "out").exists()


def test_bad_option_is_one_line(tmp_path):
    assert_one_error_line(
        run_cli("diarize", "--manifest", "m.jsonl", "--output", str(tmp_path), "--batch-size", "many"),
        "--batch-size",
        "--help",
    )


def test_a_misspelt_option_names_the_nearest_one_and_the_subcommands_help(tmp_path):
    assert_one_error_line(
        run_cli("diarize", "--manifest", "m.jsonl", "--output", str(tmp_path), "--batchsize", "8"),
        "unrecognized arguments: --batchsize 8",
        "did you mean --batch-size?",
        "python -m pipeline diarize --help",
    )


def test_missing_manifest_is_one_line(tmp_path):
    assert_one_error_line(
        run_cli("diarize", "--manifest", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "run")), "nope.jsonl"
    )


def test_existing_output_without_resume_is_one_line_and_debug_shows_the_traceback(tmp_path):
    manifest = write_jsonl(tmp_path / "m.jsonl", [with_absolute_paths(ami_rows("trn02")[0])])
    (tmp_path / "run" / "recordings").mkdir(parents=True)
    (tmp_path / "run" / "recordings" / "part-earlier.parquet").write_bytes(b"")
    args = ("diarize", "--manifest", str(manifest), "--output", str(tmp_path / "run"))
    assert_one_error_line(run_cli(*args), "--resume")
    debug = run_cli(*args, "--debug")
    assert (
        debug.returncode == 2
        and "Traceback" in debug.stderr
        and debug.stderr.strip().splitlines()[-1].startswith("error: ")
    )


def test_no_s3_credentials_names_the_three_options(tmp_path):
    env = cli_env(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    result = run_cli(
        "diarize",
        "--manifest",
        "s3://corpus/manifest.jsonl",
        "--output",
        str(tmp_path / "run"),
        "--endpoint-url",
        "http://127.0.0.1:9",
        env=env,
    )
    assert_one_error_line(result, "--anonymous", "--profile", "--endpoint-url")


def test_unknown_profile_is_one_line(tmp_path):
    env = cli_env(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    result = run_cli(
        "diarize",
        "--manifest",
        "s3://corpus/manifest.jsonl",
        "--output",
        str(tmp_path / "run"),
        "--profile",
        "nosuch",
        env=env,
    )
    assert_one_error_line(result, "nosuch", "--profile")


def test_missing_bucket_is_one_line(tmp_path, s3_endpoint):
    result = run_cli(
        "diarize",
        "--manifest",
        "s3://no-such-bucket/manifest.jsonl",
        "--output",
        str(tmp_path / "run"),
        "--endpoint-url",
        s3_endpoint,
        env=cli_env(),
    )
    assert_one_error_line(result, "bucket", "--endpoint-url")


def test_version_and_job_programs_name_themselves():
    assert run_cli("--version").stdout.startswith("corpus-diarization ")
    for job in ("jobs/diarize_corpus.py", "jobs/evaluate.py"):
        shown = subprocess.run(
            [sys.executable, job, "--help"], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=60
        )
        assert shown.returncode == 0 and shown.stdout.startswith(f"usage: {job}"), shown.stdout[:200]


def test_counts_on_the_console_read_as_english_at_one():
    from pipeline.console import counted

    assert [counted(n, "recording") for n in (0, 1, 2)] == ["0 recordings", "1 recording", "2 recordings"]
    assert counted(1, "error") == "1 error" and counted(3, "RTTM file") == "3 RTTM files"


def test_a_step_that_cannot_count_its_progress_says_it_is_still_working(monkeypatch):
    """Listing a bucket, or reading a million rows and giving them ids: a line every progress interval."""
    import io
    import threading

    from pipeline.console import CONSOLE, still_working

    stream = io.StringIO()
    monkeypatch.setattr(CONSOLE, "stream", stream)
    printed = threading.Event()
    monkeypatch.setattr(CONSOLE, "notice", lambda line: (stream.write(line + "\n"), printed.set()))
    with still_working("listing s3://bucket/calls/", every=0.01):
        assert printed.wait(60), "no line while the step ran"
    lines = stream.getvalue().splitlines()
    assert lines[0] == "progress: listing s3://bucket/calls/ (0m00s so far)", lines
    written = len(stream.getvalue())
    monkeypatch.setattr(CONSOLE, "quiet", True)
    with still_working("quiet", every=0.01):
        pass
    assert len(stream.getvalue()) == written


def test_steps_fanned_out_over_ray_count_what_is_done_with_an_eta(local_ray, monkeypatch):
    """Scoring, global RTTMs and exports of a large run: `progress: what done/total (pct), ETA` while
    they work, the results in order, and no line once everything is done."""
    from pipeline.console import CONSOLE, Ticker
    from pipeline.corpus.progress import gather

    lines: list[str] = []
    monkeypatch.setattr(CONSOLE, "notice", lines.append)
    monkeypatch.setattr(CONSOLE, "progress_interval", 0.0)
    ticker = Ticker("export csv, files written:", 4)
    for _ in range(4):
        ticker.advance()
    assert lines == [
        "progress: export csv, files written: 1/4 (25%), ETA 0m00s",
        "progress: export csv, files written: 2/4 (50%), ETA 0m00s",
        "progress: export csv, files written: 3/4 (75%), ETA 0m00s",
    ]
    lines.clear()

    @local_ray.remote
    def square(x):
        return x * x

    assert gather([square.remote(x) for x in range(5)], "scoring, chunks done:") == [0, 1, 4, 9, 16]
    assert all(line.startswith("progress: scoring, chunks done: ") for line in lines)
    assert not any(line.startswith("progress: scoring, chunks done: 5/5") for line in lines)


def test_a_terminal_gets_a_tqdm_bar_that_counts_committed_recordings(tmp_path):
    """The bar on a real pseudo-terminal (120 columns) moves when the sink commits a block."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    from pipeline.corpus.outputs import OutputLayout
    from pipeline.corpus.progress import CommitProgress
    from pipeline.corpus.tables import recordings_table

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    stream = os.fdopen(terminal, "w")
    layout = OutputLayout(str(tmp_path))
    row = {
        "uniq_id": "a",
        "audio_filepath": "a.wav",
        "manifest": "m",
        "line_number": 1,
        "status": "ok",
        "error": "",
        "audio_seconds": 1800.0,
        "segments": "",
    }
    with CommitProgress(layout, total=3, already_done=1, poll=0.1, stream=stream):
        layout.write_part("recordings", "block", recordings_table([row], "default"))
        time.sleep(0.5)
    stream.flush()

    def shown() -> str:
        text = b""
        while select.select([controller], [], [], 0.2)[0]:
            text += os.read(controller, 4096)
        return text.decode()

    text = shown()
    assert "recordings:  33%" in text and "2/3" in text and "0.50 h audio, 0 errors" in text, text
    # a terminal not sized yet (`script`, `docker exec -t`): a bar would be empty, so plain lines
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    with CommitProgress(layout, total=3, already_done=2, poll=0.1, stream=stream):
        pass
    stream.flush()
    assert "progress: 2/3 recordings (67%)" in shown()


def test_before_a_commit_the_line_counts_the_audio_the_model_actors_have_been_through(local_ray, tmp_path, monkeypatch):
    """Hours of audio in one batch are committed at its end. Before that, the model actors' tallies in
    Ray's key-value store give the line its audio and, once every row is in their hands, an ETA from
    the audio left; the run forgets them when it ends."""
    import io

    from pipeline.console import CONSOLE
    from pipeline.corpus.outputs import OutputLayout
    from pipeline.corpus.progress import CommitProgress, ForwardTally, forward_tallies

    monkeypatch.setattr(CONSOLE, "progress_interval", 0.0)
    stream = io.StringIO()  # not a terminal: plain lines

    def printed_line_with(words: str) -> str:
        deadline = time.monotonic() + 60
        while not any(words in line for line in stream.getvalue().splitlines()):
            assert time.monotonic() < deadline, stream.getvalue()
            time.sleep(0.05)
        return next(line for line in stream.getvalue().splitlines() if words in line)

    with CommitProgress(OutputLayout(str(tmp_path)), total=3, forward_rows=2, poll=0.05, stream=stream) as progress:
        actor = ForwardTally(progress.tally_key)
        actor.handed(1, 3600.0)
        actor.forwarding(3600.0, 0.25)
        actor.publish()
        assert "ETA ?" in printed_line_with("0/3 recordings (0%), 0.25 h audio, 0 errors")  # one row not handed yet
        other = ForwardTally(progress.tally_key)  # a second actor of the pool
        other.handed(1, 3600.0)
        other.publish()
        actor.forwarding(3600.0, 0.5)
        actor.publish()
        line = printed_line_with("0/3 recordings (0%), 0.50 of 2.00 h audio, 0 errors")
        assert "ETA ?" not in line, line  # 1.5 h left, at the rate the tallies moved
    assert forward_tallies(progress.tally_key) == {"rows": 0.0, "seconds": 0.0, "forwarded": 0.0}


def test_the_model_actor_tallies_what_it_forwards_and_the_built_in_models_report_their_share_as_they_go(local_ray):
    """`stages.DiarizeForward` (the model actor's class, here in the test's process) publishes the
    rows and audio it went through; the built-in models report the share of a batch done as they go
    (the default model after each chunk group, ge2e before each stretch it embeds), so a long batch
    moves the line before it returns."""
    import numpy as np

    from pipeline import load_model
    from pipeline.corpus.progress import forget_tallies, forward_tallies
    from pipeline.corpus.stages import DiarizeForward
    from pipeline.io.audio import decode_audio
    from pipeline.models.contract import Recording, RecordingBatch, forward_progress

    audio = decode_audio(str(AMI / "trn03.wav"))  # 30 s: 6 chunks of 10 s every 5 s, in groups of 4
    model = load_model("default", device="cpu", chunk_batch=4)
    shares: list[float] = []
    with forward_progress(shares.append):
        model._diarize_forward(RecordingBatch.collate([Recording("trn03", audio, 0.0, 0)]))
    assert len(model.chunk_starts(len(audio))) == 6 and shares == [4 / 6, 1.0]
    shares.clear()
    with forward_progress(shares.append):  # ge2e: the share of the timeline embedded, a 10 s stretch at a time
        load_model("ge2e", device="cpu", embedding_chunk_seconds=10)._diarize_forward(
            RecordingBatch.collate([Recording("trn03", audio, 0.0, 0)])
        )
    assert len(shares) == 3 and shares == sorted(shares) and shares[0] == 0 and shares[-1] < 1

    key = "forwarded/test-actor/"
    actor = DiarizeForward("ge2e", use_gpu=False, threads=2, tally_key=key)
    batch = {
        "uniq_id": np.array(["a", "b"]),
        "audio": np.array([audio, audio[: 16000 * 20]], dtype=object),
        "audio_seconds": np.array([len(audio) / 16000, 20.0]),
        "offset": np.zeros(2),
        "num_speakers": np.zeros(2, dtype=np.int64),
        "status": np.array(["ok", "ok"]),
        "error": np.array(["", ""], dtype=object),
    }
    try:
        assert set(actor(batch)["status"]) == {"ok"}
        tally = forward_tallies(key)
        assert tally["rows"] == 2 and tally["seconds"] == tally["forwarded"] == pytest.approx(len(audio) / 16000 + 20)
    finally:
        forget_tallies(key)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--grid", "threshold"], ["not KEY=VALUE"]),
        (["--grid", "no_such_parameter=1,2"], ["no_such_parameter", "--grid takes fields"]),
        (["--option", "no_such_option=5"], ["no_such_option", "--option takes fields"]),
    ],
)
def test_tuning_mistakes_are_one_error_line_before_any_forward_pass(tmp_path, args, words):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.tuning", "--dest", str(tmp_path), *args],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m benchmarks.tuning: error: "), result.stderr
    for word in words:
        assert word in last, last
    assert not any(tmp_path.iterdir()), "nothing is computed or written for a mistaken command"


def test_the_run_log_is_never_written_through_a_logs_link_out_of_the_output(tmp_path):
    manifest = write_jsonl(tmp_path / "m.jsonl", [with_absolute_paths(ami_rows("trn02")[0])])
    output, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    (output / "recordings").mkdir(parents=True)
    (output / "recordings" / "part-earlier.parquet").write_bytes(b"")
    elsewhere.mkdir()
    (output / "logs").symlink_to(elsewhere)
    assert_one_error_line(run_cli("diarize", "--manifest", str(manifest), "--output", str(output)), "--resume")
    assert list(elsewhere.iterdir()) == []
