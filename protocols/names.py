"""The rules for the names that come in from people and from the wire, each in one place, with one error.

- a host name is one DNS label (RFC 1123: letters, digits and '-', not at either end, at most 63
  characters), lower-case as stored. A host name, a discovery rule's name, a lease's hostname and the DNS
  zone's names all follow it; a DNS name is such labels joined by dots (at most 253 characters).
- an image name becomes a directory name under the images root, a file name under scripts/
  (`<image>.master`) and rsync module names (NAME and NAME_vN): so no '/', no leading '.', no '..',
  nothing that reads like a version module, and short enough for a file name.
- a MAC address: protocols/mac.py (its spellings), raising the same InvalidName.

A refused name is an InvalidName (a ValueError) whose message names the rule; domain/errors.py turns it
into the domain's Invalid (HTTP 400, CLI exit 2).
"""

from __future__ import annotations

import re

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
IMAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
SATELLITE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")  # also its rsync user name (with a prefix)
_VERSION_SUFFIX = re.compile(r"_v\d+$")


class InvalidName(ValueError):
    """A refused name (host name, DNS name, image name, MAC address); the message names it and the rule."""


def is_label(text: str) -> bool:
    """`text` (already lower-cased) is one DNS label."""
    return bool(DNS_LABEL.match(text))


def is_dns_name(text: str) -> bool:
    """`text` (lower-cased, no trailing dot) is a DNS name of one or more labels."""
    return 0 < len(text) <= 253 and all(DNS_LABEL.match(label) for label in text.split("."))


def host_name(name: object) -> str:
    """A host name as an operator gives it (one DNS label), lower-cased."""
    text = str(name or "").strip().lower()
    if not is_label(text):
        raise InvalidName(f"{name!r} is not a host name (one DNS label: letters, digits, '-')")
    return text


def dns_name(name: str) -> str:
    """A DNS name as an operator gives it (dot-separated labels, a trailing dot allowed), lower-cased."""
    text = name.strip().strip(".").lower()
    if not is_dns_name(text):
        raise InvalidName(f"{name!r} is not a valid host name (letters, digits and '-', dot-separated labels)")
    return text


def image_name_problem(name: object) -> str | None:
    """Why `name` cannot be an image name, or None when it can."""
    if not isinstance(name, str) or not IMAGE_NAME.fullmatch(name):
        return (f"image name {name!r}: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or "
                "digit")
    if _VERSION_SUFFIX.search(name):
        return f"image name {name!r} ends like a version module (NAME_vN); choose another name"
    return None


def image_name(name: object) -> str:
    """`name` if it can be an image name."""
    problem = image_name_problem(name)
    if problem is not None:
        raise InvalidName(problem)
    assert isinstance(name, str)
    return name


def satellite_name(name: object) -> str:
    """`name` if it can name a satellite (its rsync user name is made from it)."""
    if not isinstance(name, str) or not SATELLITE_NAME.fullmatch(name):
        raise InvalidName(f"satellite name {name!r}: use 1-31 lower-case letters, digits or '-', starting with a "
                          "letter or digit")
    return name
