"""A real S3 API on 127.0.0.1 for the tests: moto's standalone server, spoken to over HTTP by boto3.

Not in-process mocking: every request goes through a socket, signed, as it would to AWS or MinIO.
The fixtures here are imported by the test modules that need them:

- `s3_server`: one server for the session (tests use their own bucket names);
- `storage`: runs a test once per storage mode, `local` then `s3`, with the settings in the environment.

`python -m meteo_assets_tests.s3_server [PORT]` starts one by hand, e.g. to try `METEO_STORAGE=s3`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar
from urllib.parse import unquote_to_bytes

import boto3
import pytest
from moto.server import ThreadedMotoServer

from meteo_assets_tests.fake_portal import FakePortal
from meteo_assets_tests.stand_in import stand_in

# Fake keys for the fake server, and no instance-metadata probing (the SDKs' last resort).
TEST_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-3",
    "AWS_EC2_METADATA_DISABLED": "true",
}
STORAGE_MODES = ("local", "s3")
T = TypeVar("T")
_bucket_numbers = itertools.count(1)


def s3_client(url: str):
    """A boto3 S3 client for the test server (or a proxy in front of it) with the test keys."""
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name=TEST_AWS_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=TEST_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


class S3Server:
    def __init__(self, port: int = 0):
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)

    def __enter__(self) -> S3Server:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop()

    @property
    def url(self) -> str:
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def client(self):
        return s3_client(self.url)

    def storage_env(self, name: str | None = None) -> dict[str, str]:
        """Settings for `METEO_STORAGE=s3` against this server, with fresh buckets (created on first use)."""
        name = name or f"t{next(_bucket_numbers):03d}"
        return {
            "METEO_STORAGE": "s3",
            "METEO_RAW_BUCKET": f"{name}-raw",
            "METEO_LAKE_BUCKET": f"{name}-lake",
            "METEO_S3_ENDPOINT_URL": self.url,
            "METEO_S3_CREATE_BUCKETS": "1",
            **TEST_AWS_ENV,
        }


class SlowProxy:
    """A TCP relay to a local port that passes at most `rate` bytes per second towards the server.

    Once a PUT of a key containing `watch` has begun, `upload_started` is set and the bytes relayed
    since are counted in `upload_bytes`; `body_in_flight` is set past `IN_FLIGHT` bytes. A writer
    can then be killed in the middle of sending an object.
    """

    IN_FLIGHT = 16_384

    def __init__(self, target_port: int, watch: bytes, rate: int = 20_000):
        self.target_port, self.watch, self.rate = target_port, watch, rate
        self.upload_started, self.body_in_flight = threading.Event(), threading.Event()
        self.upload_bytes = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> SlowProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(1024 if upstream else 65536):
                if upstream and chunk.startswith(b"PUT ") and self.watch in unquote_to_bytes(chunk.split(b"\r\n", 1)[0]):
                    self.upload_started.set()
                sink.sendall(chunk)
                if upstream and self.upload_started.is_set():
                    self.upload_bytes += len(chunk)
                    if self.upload_bytes >= self.IN_FLIGHT:
                        self.body_in_flight.set()
                if upstream:
                    time.sleep(len(chunk) / self.rate)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch) -> dict[str, str]:
    """The test keys in the environment, where the standard AWS chain finds them."""
    for name, value in TEST_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return TEST_AWS_ENV


@pytest.fixture(params=STORAGE_MODES)
def storage(request, monkeypatch) -> str:
    """Run the test in each storage mode; the mode's settings are in the environment meanwhile."""
    server = request.getfixturevalue("s3_server") if request.param == "s3" else None
    for name, value in mode_settings(request.param, server).items():
        monkeypatch.setenv(name, value)
    return request.param


def mode_settings(mode: str, server: S3Server) -> dict[str, str]:
    """The settings that select a storage mode (S3: this server's endpoint and buckets)."""
    return server.storage_env() if mode == "s3" else {"METEO_STORAGE": "local"}


@contextlib.contextmanager
def once_per_storage_mode(folders, server: S3Server, specs, work: Callable[[], T]) -> Iterator[dict[str, tuple]]:
    """`work()` once per storage mode, each on its own stand-in portal serving `specs`, in the
    settings of that mode: mode → (stand-in, settings, what `work` returned). `folders` is pytest's
    `tmp_path_factory`; the portals stop when the block ends."""
    done = {}
    with contextlib.ExitStack() as stack:
        for mode in STORAGE_MODES:
            env = stack.enter_context(stand_in(folders.mktemp(mode), FakePortal(specs), specs))
            settings = {**env.env, **mode_settings(mode, server)}
            with pytest.MonkeyPatch.context() as patch:
                for name, value in settings.items():
                    patch.setenv(name, value)
                done[mode] = (env, settings, work())
        yield done


if __name__ == "__main__":
    with S3Server(int(sys.argv[1]) if len(sys.argv) > 1 else 0) as running:
        print(f"S3 API on {running.url} (any access key); Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
