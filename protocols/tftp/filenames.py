"""Which requested file names may be served: a pure policy, no file system access.

Policy (refusals raise TftpError with ACCESS_VIOLATION):
- empty names, names over 255 bytes (UTF-8), control characters (NUL included) and backslashes
  are refused; a backslash is a path separator to Windows-minded clients and a traversal risk;
- ONE leading '/' is stripped, because many PXE clients and boot loaders send root-relative
  names such as "/pxelinux.0"; the name is then relative to the TFTP root, so "/etc/passwd"
  means "<root>/etc/passwd" and can never reach the host's /etc. Two leading slashes are refused;
- '.' and empty components ("a//b") are dropped; any '..' component is refused, whether or not
  it would stay inside the root.
The result is a tuple of plain components; the caller joins it to the root and must still
refuse symlinks that resolve outside the root (that needs the file system).
"""

from __future__ import annotations

from protocols.tftp.packets import ErrorCode, TftpError

MAX_FILENAME_BYTES = 255


def safe_path_parts(name: str) -> tuple[str, ...]:
    """Return the components of `name` relative to the TFTP root, or raise TftpError."""
    if not name:
        raise TftpError("empty file name", ErrorCode.ACCESS_VIOLATION)
    if len(name.encode("utf-8", "surrogatepass")) > MAX_FILENAME_BYTES:
        raise TftpError(f"file name longer than {MAX_FILENAME_BYTES} bytes", ErrorCode.ACCESS_VIOLATION)
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise TftpError("control character in file name", ErrorCode.ACCESS_VIOLATION)
    if "\\" in name:
        raise TftpError("backslash in file name", ErrorCode.ACCESS_VIOLATION)
    relative = name[1:] if name.startswith("/") else name
    if relative.startswith("/"):
        raise TftpError("absolute file name", ErrorCode.ACCESS_VIOLATION)
    parts = tuple(p for p in relative.split("/") if p not in ("", "."))
    if ".." in parts:
        raise TftpError("'..' in file name", ErrorCode.ACCESS_VIOLATION)
    if not parts:
        raise TftpError("file name names the root", ErrorCode.ACCESS_VIOLATION)
    return parts
