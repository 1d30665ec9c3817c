"""Flaky and forbidding object storage, through a fault-injecting proxy on loopback in front of moto's
S3 server: transient errors (HTTP 500/503, connection reset) are retried with backoff and lose
nothing; a permanent error (403 on one object) becomes exactly one error row with a readable reason.
Audio over plain HTTP: read with ranges; a 404 is a missing file, a 503 or a refused connection is not."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest
from conftest import AMI, FAST_MODEL, ami_rows, free_port

NAMES = ("trn02", "trn03", "trn04", "trn05")
FORBIDDEN = "forbidden"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "te", "upgrade"}
# Request number modulo 10 -> fault: about one request in three fails, never two in a row.
FAULTS = {1: 503, 4: 500, 7: "reset"}


class FaultyS3Proxy(ThreadingHTTPServer):
    """Forwards every request to `upstream` except: any request for a key containing `forbidden_key`
    gets 403 AccessDenied, always; and, while `faulty` is set, request n gets `FAULTS[n % 10]`
    (a 500/503 error or a reset connection) instead of an answer. Deterministic per request order."""

    daemon_threads = True

    def __init__(self, upstream: str, forbidden_key: str):
        super().__init__(("127.0.0.1", free_port()), _ProxyHandler)
        self.upstream = urlsplit(upstream)
        self.forbidden_key = forbidden_key
        self.faulty = False
        self.requests = 0
        self.injected = {503: 0, 500: 0, "reset": 0, 403: 0}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def fault_for(self, path: str) -> int | str | None:
        with self._lock:
            if self.forbidden_key in path:
                self.injected[403] += 1
                return 403
            if not self.faulty:
                return None
            self.requests += 1
            fault = FAULTS.get(self.requests % 10)
            if fault is not None:
                self.injected[fault] += 1
            return fault

    def handle_error(self, request, client_address) -> None:
        """Resets and clients hanging up are the point of this server; nothing to report."""


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if self.command != "HEAD" or not any(name.lower() == "content-length" for name, _ in headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
        ).encode()
        self._answer(status, body, [("Content-Type", "application/xml")])

    def _reset(self) -> None:
        """Close with RST (SO_LINGER 0): the client sees 'connection reset by peer'."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _forward(self) -> None:
        body = self._body()
        fault = self.server.fault_for(self.path)
        if fault == "reset":
            return self._reset()
        if fault == 403:
            return self._error(403, "AccessDenied", "Access Denied")
        if fault in (500, 503):
            return self._error(fault, "ServiceUnavailable" if fault == 503 else "InternalError", "injected fault")
        upstream = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=30)
        try:
            headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
            upstream.request(
                self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None, headers=headers
            )
            response = upstream.getresponse()
            payload = response.read()
            kept = [
                (n, v)
                for n, v in response.getheaders()
                if n.lower() not in HOP_BY_HOP and (self.command == "HEAD" or n.lower() != "content-length")
            ]
            self._answer(response.status, payload, kept)
        finally:
            upstream.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward


@pytest.fixture(scope="module")
def proxy(s3_endpoint):
    server = FaultyS3Proxy(s3_endpoint, forbidden_key=FORBIDDEN)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def bucket(s3_endpoint):
    """Audio and a manifest on moto, uploaded directly (not through the proxy)."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    fs.mkdir("flaky")
    rows = ami_rows(*NAMES)
    for row in rows:
        fs.put_file(str(AMI / row["audio_filepath"]), f"flaky/in/{row['audio_filepath']}")
    fs.put_file(str(AMI / "trn02.wav"), f"flaky/in/{FORBIDDEN}.wav")
    fs.pipe_file("flaky/in/manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    forbidden_rows = rows + [{"audio_filepath": f"{FORBIDDEN}.wav", "num_speakers": 1}]
    fs.pipe_file("flaky/in/with-denied-row.jsonl", "".join(json.dumps(r) + "\n" for r in forbidden_rows).encode())
    return fs


def recordings_of(fs, output: str) -> list[dict]:
    fs.invalidate_cache()
    return pq.read_table(f"{output}/recordings", filesystem=fs).to_pylist()


@pytest.mark.slow
def test_transient_errors_and_resets_are_retried_and_lose_nothing(local_ray, bucket, proxy):
    import pipeline

    proxy.faulty = True
    try:
        summary = pipeline.run_corpus(
            "s3://flaky/in/manifest.jsonl",
            "s3://flaky/out-transient",
            model=FAST_MODEL,
            batch_size=2,
            storage_options={"endpoint_url": proxy.url},
        )
    finally:
        proxy.faulty = False

    assert all(proxy.injected[fault] > 0 for fault in (503, 500, "reset")), proxy.injected
    assert (summary["input_rows"], summary["ok"], summary["errors"]) == (len(NAMES), len(NAMES), 0)
    recordings = recordings_of(bucket, "flaky/out-transient")
    assert sorted(r["uniq_id"] for r in recordings) == sorted(NAMES)
    assert [r["error"] for r in recordings if r["status"] != "ok"] == []
    assert sorted(bucket.ls("flaky/out-transient/rttm")) == sorted(f"flaky/out-transient/rttm/{n}.rttm" for n in NAMES)
    manifest = bucket.cat_file("flaky/out-transient/manifest.jsonl").decode().splitlines()
    assert len(manifest) == len(NAMES)


@pytest.mark.slow
def test_permanent_403_is_one_error_row_with_a_readable_reason(local_ray, bucket, proxy):
    import pipeline

    summary = pipeline.run_corpus(
        "s3://flaky/in/with-denied-row.jsonl",
        "s3://flaky/out-permanent",
        model=FAST_MODEL,
        batch_size=2,
        storage_options={"endpoint_url": proxy.url},
    )

    assert (summary["input_rows"], summary["ok"], summary["errors"]) == (len(NAMES) + 1, len(NAMES), 1)
    recordings = recordings_of(bucket, "flaky/out-permanent")
    assert sorted(r["uniq_id"] for r in recordings) == sorted(NAMES + (FORBIDDEN,))
    (failed,) = [r for r in recordings if r["status"] != "ok"]
    assert failed["uniq_id"] == FORBIDDEN
    assert failed["error"].startswith("PermissionError: ") and (
        "Forbidden" in failed["error"] or "Access Denied" in failed["error"]
    ), failed["error"]
    assert "forbidden.wav" in failed["audio_filepath"]
    assert sorted(bucket.ls("flaky/out-permanent/rttm")) == sorted(f"flaky/out-permanent/rttm/{n}.rttm" for n in NAMES)


class _AudioOverHttp(BaseHTTPRequestHandler):
    """Serves the AMI excerpts with ranges, as a web server does; `/busy/...` answers 503 always."""

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        path = AMI / self.path.lstrip("/")
        if self.path.startswith("/busy/"):
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not path.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = path.read_bytes()
        first, last = 0, len(data) - 1
        if (ranged := self.headers.get("Range", "")).startswith("bytes="):
            start, _, end = ranged[len("bytes=") :].partition("-")
            first, last = int(start or 0), min(int(end) if end else len(data) - 1, len(data) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        if body:
            self.wfile.write(data[first : last + 1])

    def log_message(self, *args):
        pass


def test_audio_over_http_is_read_and_a_server_that_does_not_serve_it_is_not_called_missing():
    """fsspec's HTTP filesystem says FileNotFoundError for a 404, a 503 and a refused connection alike:
    only the 404 is `audio file not found`; the others name what the server did (a later
    `--retry-errors` may get past them)."""
    from pipeline.io.audio import decode_audio

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _AudioOverHttp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        sliced = decode_audio(f"{base}/trn03.wav", offset=10.0, duration=5.0)
        assert (sliced == decode_audio(str(AMI / "trn03.wav"), offset=10.0, duration=5.0)).all()
        with pytest.raises(FileNotFoundError, match=f"audio file not found: {base}/nope.wav"):
            decode_audio(f"{base}/nope.wav")
        with pytest.raises(ConnectionError, match=f"cannot read {base}/busy/trn03.wav: 503"):
            decode_audio(f"{base}/busy/trn03.wav")
    finally:
        server.shutdown()
    closed = f"http://127.0.0.1:{free_port()}/trn03.wav"
    with pytest.raises(ConnectionError, match="cannot read .*Cannot connect to host"):
        decode_audio(closed)
