"""Is a request path safe to map onto files? A pure classifier over the RAW request target.

Why raw: aiohttp decodes percent-escapes (including %2F) in match_info and yarl folds dot segments,
so the decoded path can look harmless while the client sent `..%2F..%2Fetc`. We decode ourselves,
strictly, and refuse:
- malformed escapes, and escaped separators or NUL (%2F, %5C, %00): no client needs them (400);
- control characters, backslashes, '.' or '..' components and empty components ('a//b') (400);
- components starting with '.' (hidden and staging files such as '.foo.tmp' are not served) (404).
The result is a tuple of plain components; whoever joins them to a root must still refuse symlinks
that resolve outside it (that needs the file system, which this module never touches).
"""

from __future__ import annotations

from dataclasses import dataclass

_HEX = "0123456789abcdefABCDEF"


@dataclass(slots=True)
class PathRefused(ValueError):
    """Refused path; `status` is the HTTP status to answer with (400 malformed, 404 not served)."""

    reason: str
    status: int = 400

    def __str__(self) -> str:
        return self.reason


def _unquote_strict(segment: str) -> str:
    out = bytearray()
    i = 0
    raw = segment.encode("utf-8", "surrogateescape")
    while i < len(raw):
        c = raw[i]
        if c == 0x25:  # '%'
            pair = raw[i + 1:i + 3].decode("ascii", "replace")
            if len(pair) != 2 or any(ch not in _HEX for ch in pair):
                raise PathRefused("malformed percent-escape")
            byte = int(pair, 16)
            if byte in (0x2F, 0x5C, 0x00):
                raise PathRefused("escaped '/', '\\' or NUL in path")
            out.append(byte)
            i += 3
        else:
            out.append(c)
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise PathRefused("path is not UTF-8") from None


def path_parts(raw_target: str) -> tuple[str, ...]:
    """'/boot/files/a%20b/c' (query allowed, ignored) -> ('boot', 'files', 'a b', 'c'), or PathRefused.

    A trailing '/' is allowed (it names a directory; the caller decides whether that is served).
    """
    path = raw_target.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        raise PathRefused("path is not absolute (origin-form expected)")
    segments = path[1:].split("/")
    if segments and segments[-1] == "":
        segments.pop()  # trailing slash
    parts: list[str] = []
    for segment in segments:
        if segment == "":
            raise PathRefused("empty path component ('//')")
        part = _unquote_strict(segment)
        if any(ord(ch) < 0x20 or ch == "\x7f" for ch in part):
            raise PathRefused("control character in path")
        if "\\" in part:
            raise PathRefused("backslash in path")
        if part in (".", ".."):
            raise PathRefused("'.' or '..' component in path")
        parts.append(part)
    return tuple(parts)


def served_file_parts(raw_target: str, prefix: tuple[str, ...]) -> tuple[str, ...]:
    """The components under `prefix` (e.g. ('boot', 'files')) of a file request, or PathRefused."""
    parts = path_parts(raw_target)
    if parts[:len(prefix)] != prefix or len(parts) == len(prefix):
        raise PathRefused("not a file under " + "/".join(prefix), status=404)
    relative = parts[len(prefix):]
    if any(p.startswith(".") for p in relative):
        raise PathRefused("hidden files are not served", status=404)
    return relative
