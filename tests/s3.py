"""S3 through a real HTTP endpoint: moto's threaded server on 127.0.0.1 (as s3fs's own tests do).

`moto_s3` (module-scoped) starts the server on a free port, creates a bucket with boto3 and sets the
environment the store reads: the endpoint (`TRANS_ENCODER_S3_ENDPOINT`), dummy credentials in the
standard AWS variables (a distinctive secret key, so tests can check it never leaks), fast-failing
client options (`TRANS_ENCODER_STORAGE_OPTIONS`) and a private download cache. The server can be
stopped and restarted on the same port; moto keeps the bucket's contents across restarts.

Use it from a test module with `from tests.s3 import moto_s3  # noqa: F401`.
"""

from __future__ import annotations

import json
import logging
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BUCKET = "te-test-bucket"
# Fail fast on a dead endpoint: one botocore attempt, short connect timeout; Prefect's task retries
# (tasks/stages.py) are what must bring the run through an outage.
FAST_FAIL_OPTIONS = {
    "s3": {"config_kwargs": {"connect_timeout": 2, "read_timeout": 20, "retries": {"max_attempts": 1}}}
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MotoS3:
    """A running moto S3 endpoint with one bucket."""

    port: int
    secret: str
    bucket: str = BUCKET
    server: object | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()  # type: ignore[attr-defined]
            self.server = None

    def client(self):  # noqa: ANN201 - boto3 client
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        """Every object under `prefix` with its bytes (read with boto3, not through our store)."""
        client = self.client()
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return {key: client.get_object(Bucket=self.bucket, Key=key)["Body"].read() for key in keys}


@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """A moto S3 server on 127.0.0.1 with a bucket, and the environment that points the store at it."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    s3 = MotoS3(port=free_port(), secret=f"te-secret-{uuid.uuid4().hex}")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "te-test-access-key")
        mp.setenv("AWS_SECRET_ACCESS_KEY", s3.secret)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.delenv("AWS_PROFILE", raising=False)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.setenv("TRANS_ENCODER_S3_ENDPOINT", s3.endpoint)
        mp.setenv("TRANS_ENCODER_STORAGE_OPTIONS", json.dumps(FAST_FAIL_OPTIONS))
        mp.setenv("TRANS_ENCODER_CACHE", str(tmp_path_factory.mktemp("te-download-cache")))
        s3.start()
        try:
            s3.client().create_bucket(Bucket=s3.bucket)
            yield s3
        finally:
            s3.stop()


def download_cache() -> Path:
    """The download cache the store uses for remote artifacts (set by `moto_s3`)."""
    import os

    return Path(os.environ["TRANS_ENCODER_CACHE"])


class CuttingProxy:
    """A TCP proxy in front of moto that kills the endpoint while one upload is in flight.

    Requests pass through unchanged until one matches `request` (a regex on the raw request line,
    e.g. the PUT of a model file): after `after` bytes of that request's body have gone through, the
    proxy closes both sides of the connection and stops the moto server; `downtime` seconds later
    moto is started again and connections pass through as before. `cut` records the request line and
    the body bytes that got through before the cut, and the body's announced length.
    """

    def __init__(self, s3: MotoS3, request: bytes, after: int, downtime: float = 1.0) -> None:
        import re
        import threading

        self.s3, self.pattern, self.after, self.downtime = s3, re.compile(request), after, downtime
        self.cut: dict[str, object] = {}
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        import threading

        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.s3.port), timeout=5)
            except OSError:  # moto is down: the client sees the connection drop
                client.close()
                continue
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upload: bool) -> None:
        window, armed, body_seen = b"", False, 0  # recent request bytes; body bytes of the victim
        try:
            while data := source.recv(65536):
                if upload and not armed and not self.cut:
                    window = (window + data)[-(1 << 20) :]
                    match = self.pattern.search(window)
                    end = window.find(b"\r\n\r\n", match.start()) if match else -1
                    if match and end >= 0 and self._arm(window[match.start() : end]):
                        armed, body_seen = True, len(window) - (end + 4)  # body bytes in this chunk
                elif armed:
                    body_seen += len(data)
                if armed and body_seen >= self.after:
                    sink.sendall(data[: len(data) - (body_seen - self.after)])
                    self._kill(source, sink)
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass

    def _arm(self, head: bytes) -> bool:
        """Claim the cut for this request (only one request is ever cut)."""
        import re

        with self._lock:
            if self.cut:
                return False
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            self.cut = {
                "request": head.split(b"\r\n", 1)[0].decode(),
                "length": int(length[1]) if length else None,
            }
            return True

    def _kill(self, source: socket.socket, sink: socket.socket) -> None:
        import threading

        self.cut["sent"] = self.after
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.s3.stop()  # the endpoint dies with the upload in flight ...
        threading.Timer(self.downtime, self.s3.start).start()  # ... and comes back
