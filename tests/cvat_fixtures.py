"""The `server` (CVAT API test server with user alice) and `conn` (alice logged in) fixtures
shared by the CVAT tests: import both names into a test module to use them."""
from __future__ import annotations

import pytest

from annotator.cvat.client import connect

from tests.cvat_server import CvatTestServer


@pytest.fixture
def server():
    with CvatTestServer() as s:
        s.add_user("alice", "alice-pw")
        yield s


@pytest.fixture
def conn(server, tmp_path):
    c = connect(server.url, "alice", "alice-pw", env={}, cache_dir=tmp_path / "cache", retries=2, backoff=0.01,
                timeout=10)
    yield c
    c.close()
