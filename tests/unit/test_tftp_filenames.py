"""Filename policy: every traversal variant is refused; what passes stays under the root."""

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.tftp import MAX_FILENAME_BYTES, ErrorCode, TftpError, safe_path_parts


@pytest.mark.parametrize(
    "name, parts",
    [
        ("pxelinux.0", ("pxelinux.0",)),
        ("/pxelinux.0", ("pxelinux.0",)),  # root-relative, as many PXE clients send it
        ("pxelinux.cfg/01-52-54-00-12-34-56", ("pxelinux.cfg", "01-52-54-00-12-34-56")),
        ("a/./b", ("a", "b")),
        ("a//b/", ("a", "b")),
        ("/etc/passwd", ("etc", "passwd")),  # means <root>/etc/passwd, never the host's
        ("...", ("...",)),
        ("a..b", ("a..b",)),
        ("x" * MAX_FILENAME_BYTES, ("x" * MAX_FILENAME_BYTES,)),
    ],
)
def test_accepted_names(name, parts):
    assert safe_path_parts(name) == parts


@pytest.mark.parametrize(
    "name",
    [
        "",
        "..",
        "../etc/passwd",
        "a/../../x",
        "a/..",
        "a/../b",  # harmless, still refused: '..' is never needed to fetch a boot file
        "./../x",
        "/../etc/passwd",
        "//etc/passwd",
        "///x",
        "..\\etc\\passwd",
        "a\\b",
        "\\\\server\\share",
        "a\0b",
        "\0",
        "a\x01b",
        "a\nb",
        "a\x7fb",
        "/",
        ".",
        "./",
        "x" * (MAX_FILENAME_BYTES + 1),
        "\u00e9" * 128,  # 256 bytes in UTF-8
    ],
)
def test_refused_names_raise_access_violation(name):
    with pytest.raises(TftpError) as caught:
        safe_path_parts(name)
    assert caught.value.code == ErrorCode.ACCESS_VIOLATION


@given(st.text(max_size=300))
def test_any_accepted_name_stays_under_the_root(name):
    try:
        parts = safe_path_parts(name)
    except TftpError:
        return
    assert parts
    root = "/srv/tftp"
    joined = posixpath.normpath(posixpath.join(root, *parts))
    assert joined.startswith(root + "/")
    for part in parts:
        assert part not in ("", ".", "..") and "/" not in part and "\\" not in part and "\0" not in part
