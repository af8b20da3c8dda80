"""The one downloader (issue 14 item 3), against a local HTTP server: a good file is checked and moved into the
cache atomically; a truncated transfer, a server error, a wrong checksum or size and a failed content check
leave nothing behind (no temporary file, no folder this call created); a broken cached file is fetched again."""

import hashlib
import logging
import os

import pytest

from gendex.datasets._download import DownloadError, Remote, fetch

BODY = bytes(range(256)) * 1000  # 256 kB: several chunks
SHA = hashlib.sha256(BODY).hexdigest()


def remote(server, path="/data.bin", **kw):
    kw.setdefault("filename", "sub/data.bin")
    return Remote(url=server.url(path), what="the test data", **kw)


def listing(folder):
    """Every file and folder under `folder` (relative), hidden temporary files included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else None


def test_good_file_is_checked_and_moved_into_the_cache(http_server, cache):
    http_server.files["/data.bin"] = (200, BODY, None)
    path = fetch(remote(http_server, size=len(BODY), sha256=SHA))
    assert path == cache / "sub" / "data.bin" and path.read_bytes() == BODY
    assert listing(cache) == ["sub", "sub/data.bin"]  # no temporary file left
    assert fetch(remote(http_server, size=len(BODY), sha256=SHA)) == path
    assert http_server.requests == ["/data.bin"]  # the second call used the cache


@pytest.mark.parametrize(
    ("served", "pins", "match"),
    [
        ((200, BODY[:100_000], len(BODY)), {}, r"stopped after 100,000 of 256,000 bytes"),
        ((500, b"oops", None), {}, r"HTTPError: HTTP Error 500"),
        ((404, b"gone", None), {}, r"HTTPError: HTTP Error 404"),
        (
            (200, BODY[:-1] + b"x", None),
            {"sha256": SHA},
            rf"not the expected one: its SHA-256 is [0-9a-f]{{64}}, {SHA}",
        ),
        ((200, BODY, None), {"size": len(BODY) + 1}, r"it has 256,000 bytes, 256,001 expected"),
    ],
    ids=["truncated", "server error", "not found", "wrong checksum", "wrong size"],
)
def test_failures_leave_nothing_behind(http_server, cache, served, pins, match):
    http_server.files["/data.bin"] = served
    with pytest.raises(DownloadError, match=match) as info:
        fetch(remote(http_server, **pins), offline_hint="Use path= instead.")
    message = str(info.value)
    assert message.endswith("Use path= instead.") and "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # one line, no chained traceback
    assert isinstance(info.value, ConnectionError)
    assert listing(cache) is None  # not even an empty cache folder


def test_an_existing_cache_folder_is_kept_and_left_clean(http_server, cache):
    (cache / "sub").mkdir(parents=True)
    (cache / "sub" / "other.txt").write_text("keep me")
    http_server.files["/data.bin"] = (200, BODY[:10], len(BODY))
    with pytest.raises(DownloadError, match="stopped after 10 of"):
        fetch(remote(http_server))
    assert listing(cache) == ["sub", "sub/other.txt"]


def test_content_check_failure_is_reported(http_server, cache):
    http_server.files["/data.bin"] = (200, b"<html>captive portal</html>", None)

    def check(path):
        if not path.read_bytes().startswith(b"\x00"):
            raise ValueError("it does not start with a NUL byte")

    with pytest.raises(DownloadError, match="not the expected one: it does not start with a NUL byte; nothing was"):
        fetch(remote(http_server), check=check)
    assert listing(cache) is None


def test_interrupted_download_removes_its_temporary_file(http_server, cache):
    http_server.files["/data.bin"] = (200, BODY, None)

    def interrupt(path):
        assert path.parent == cache / "sub" and path.name.startswith(".data.bin.") and path.suffix == ".part"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch(remote(http_server), check=interrupt)
    assert listing(cache) is None


@pytest.mark.parametrize("broken", [b"", BODY[:1000], b"x" * len(BODY)], ids=["empty", "truncated", "corrupt"])
def test_a_broken_cached_file_is_fetched_again(http_server, cache, caplog, broken):
    dest = cache / "sub" / "data.bin"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(broken)
    http_server.files["/data.bin"] = (200, BODY, None)
    with caplog.at_level(logging.WARNING, logger="gendex"):
        path = fetch(remote(http_server, size=len(BODY), sha256=SHA))
    assert path.read_bytes() == BODY and http_server.requests == ["/data.bin"]
    assert "fails its check" in caplog.text
    assert listing(cache) == ["sub", "sub/data.bin"]


def test_a_broken_cached_file_stays_when_the_new_download_fails(http_server, cache):
    dest = cache / "sub" / "data.bin"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"partial")
    http_server.files["/data.bin"] = (500, b"", None)
    with pytest.raises(DownloadError):
        fetch(remote(http_server, sha256=SHA))
    assert listing(cache) == ["sub", "sub/data.bin"]  # no temporary file; the next call checks it again


def test_offline_is_one_clear_line(no_network, cache):
    rem = Remote(url="https://example.invalid/data.bin", filename="data.bin", what="the test data")
    with pytest.raises(DownloadError, match=r"could not download the test data from https://example\.invalid") as e:
        fetch(rem, offline_hint="Pass path=.")
    assert "\n" not in str(e.value) and str(e.value).endswith("Pass path=.")
    assert listing(cache) is None


def test_no_progress_bar_unless_asked_or_in_a_terminal(http_server, cache, capfd):
    http_server.files["/data.bin"] = (200, BODY, None)
    fetch(remote(http_server))
    assert capfd.readouterr().err == ""  # pytest's stderr is not a terminal
    os.remove(cache / "sub" / "data.bin")
    fetch(remote(http_server), progress=True)
    assert "data.bin" in capfd.readouterr().err
