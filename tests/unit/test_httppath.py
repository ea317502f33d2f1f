"""protocols.httppath: the raw-path classifier every served file goes through."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.httppath import PathRefused, path_parts, served_file_parts

FILES = ("boot", "files")


@pytest.mark.parametrize(("raw", "parts"), [
    ("/boot/files/undionly.kpxe", ("undionly.kpxe",)),
    ("/boot/files/installer/vmlinuz", ("installer", "vmlinuz")),
    ("/boot/files/a%20b", ("a b",)),
    ("/boot/files/x?y=../..", ("x",)),  # the query is not part of the path
    ("/boot/files/caf%C3%A9", ("café",)),
])
def test_plain_paths_are_served(raw: str, parts: tuple[str, ...]) -> None:
    assert served_file_parts(raw, FILES) == parts


@pytest.mark.parametrize(("raw", "status"), [
    ("/boot/files/../../etc/passwd", 400),
    ("/boot/files/installer/../../../etc/passwd", 400),
    ("/boot/files/%2e%2e/%2e%2e/etc/passwd", 400),
    ("/boot/files/%2E%2E/x", 400),
    ("/boot/files/.%2e/x", 400),
    ("/boot/files/./x", 400),
    ("/boot/files/..%2F..%2Fetc%2Fpasswd", 400),
    ("/boot/files/a%2fb", 400),
    ("/boot/files/..%5C..%5Cetc", 400),
    ("/boot/files/a\\..\\b", 400),
    ("/boot/files/a%00.kpxe", 400),
    ("/boot/files/a\x00b", 400),
    ("/boot/files/a%0ab", 400),
    ("/boot/files//etc/passwd", 400),
    ("/boot/files/%", 400),
    ("/boot/files/%g0", 400),
    ("/boot/files/%ff", 400),  # not UTF-8
    ("boot/files/x", 400),  # not origin-form
    ("/boot/files/", 404),
    ("/boot/files/.hidden", 404),
    ("/boot/files/installer/.vmlinuz.123.tmp", 404),
    ("/boot/other/x", 404),
])
def test_traversal_variants_are_refused(raw: str, status: int) -> None:
    with pytest.raises(PathRefused) as info:
        served_file_parts(raw, FILES)
    assert info.value.status == status


def test_trailing_slash_is_allowed_by_the_general_check() -> None:
    assert path_parts("/api/v1/status/") == ("api", "v1", "status")


def _assert_plain_or_refused(tail: str) -> None:
    try:
        parts = served_file_parts("/boot/files/" + tail, FILES)
    except PathRefused:
        return
    assert parts
    for part in parts:
        assert part not in ("", ".", "..")
        assert "/" not in part and "\\" not in part and "\x00" not in part
        assert not part.startswith(".")


@given(st.text(max_size=60))
def test_any_accepted_path_is_plain_components(tail: str) -> None:
    _assert_plain_or_refused(tail)


_PIECES = st.sampled_from(["..", ".", "%2e", "%2E", "%2f", "%2F", "/", "\\", "%00", "a", "%5c", "%", "e", "%41"])


@given(st.lists(_PIECES, max_size=12).map("".join))
def test_tricky_mixtures_never_yield_a_traversal(tail: str) -> None:
    _assert_plain_or_refused(tail)
