"""Loopback servers the connector tests start themselves: http.server and moto (S3)."""

from __future__ import annotations

import functools
import http.server
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import loopback


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files; paths ending in ``/podcast`` are served as RSS; logs stay quiet."""

    def guess_type(self, path: str | Any) -> str:
        if str(path).endswith("podcast"):
            return "application/rss+xml; charset=utf-8"
        return super().guess_type(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class HttpSite:
    root: Path
    base_url: str


@pytest.fixture(scope="module")
def http_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpSite]:
    root = tmp_path_factory.mktemp("site")
    handler = functools.partial(_Handler, directory=str(root))
    with loopback.serving(handler) as base_url:
        yield HttpSite(root=root, base_url=base_url)


@dataclass
class S3Server:
    endpoint: str
    storage_options: dict[str, Any]

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    yield S3Server(
        endpoint=endpoint,
        storage_options={"endpoint_url": endpoint, "key": "testing", "secret": "testing"},
    )
    server.stop()
