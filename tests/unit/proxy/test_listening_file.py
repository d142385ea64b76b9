"""The file in which the running proxy says its address for `./run.sh env`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tollgate.proxy import listening_file


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("0.0.0.0", "http://127.0.0.1:8080"),
        ("::", "http://127.0.0.1:8080"),
        ("", "http://127.0.0.1:8080"),
        ("::1", "http://[::1]:8080"),
        ("10.0.0.5", "http://10.0.0.5:8080"),
    ],
)
def test_the_url_is_what_a_client_of_this_host_dials(host: str, url: str) -> None:
    assert listening_file.proxy_url(host, 8080) == url


def test_written_whole_and_removed_only_by_its_process(tmp_path: Path) -> None:
    path = listening_file.write(tmp_path / "tollgate-listening", "http://127.0.0.1:9090", os.getpid())
    assert path == tmp_path / "tollgate-listening"
    assert path.read_text() == f"http://127.0.0.1:9090 {os.getpid()}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["tollgate-listening"]
    path.write_text("http://127.0.0.1:9091 1\n")  # another proxy of the same folder, since
    listening_file.remove(path, os.getpid())
    assert path.exists()
    listening_file.write(tmp_path / "tollgate-listening", "http://127.0.0.1:9090", os.getpid())
    listening_file.remove(path, os.getpid())
    assert not path.exists()
    listening_file.remove(path, os.getpid())  # gone already: nothing to do


def test_a_folder_that_cannot_take_it_is_no_error(tmp_path: Path) -> None:
    assert (
        listening_file.write(tmp_path / "missing" / "tollgate-listening", "http://127.0.0.1:9090", os.getpid()) is None
    )
