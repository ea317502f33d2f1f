"""The image catalog as GET /api/v1/images and `imageserver images list` answer it: every registered version
with who uses it; and which versions `images rm` may remove (over an ImageStore port: the appliance's
Catalog, which then removes the trees).

The fields of `imageserver images list --json`, plus what the dashboard shows beside them; the recorded
disk layout stays out (it is long: `images show` and the install script have it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from domain.errors import Conflict, NotFound
from domain.views import doc
from state.db import Connection
from state.images import ImageVersion, hosts_using, list_versions
from state.transports import DEFAULT, TRANSPORTS, image_transport


@dataclass(frozen=True, slots=True)
class ImageView:
    name: str
    version: int
    created: float
    source: str | None = field(metadata=doc("rsync://HOST/..., ssh://..., clone:NAME/vN"))
    files: int | None = field(metadata=doc("entries in the tree"))
    bytes: int | None
    path: str = field(metadata=doc("the tree on the imageserver (images/NAME/vN)"))
    note: str | None
    arch: str | None = field(metadata=doc("the CPU architecture it was captured from (x86_64, arm64, ...); "
                                          "null: not known"))
    newest: bool = field(metadata=doc("the image's newest version: hosts without a pinned version install it"))
    hosts: list[str] = field(metadata=doc("hosts assigned to this version"))
    transport: str = field(metadata=doc("how its installers fetch it unless a host says otherwise",
                                        enum=list(TRANSPORTS)))


@dataclass(frozen=True, slots=True)
class ImageList:
    images: list[ImageView]


def catalog(conn: Connection) -> ImageList:
    versions = list_versions(conn)
    top = {iv.name: iv.version for iv in versions}  # ordered by version: the last one wins
    return ImageList([ImageView(name=iv.name, version=iv.version, created=iv.created, source=iv.source,
                                files=iv.files, bytes=iv.bytes, path=iv.path, note=iv.note, arch=iv.arch,
                                newest=top[iv.name] == iv.version, hosts=hosts_using(conn, iv.name, iv.version),
                                transport=image_transport(conn, iv.name) or DEFAULT)
                      for iv in versions])


class ImageStore(Protocol):
    """What removing image versions reads (appliance.images.catalog.Catalog implements it)."""

    def versions(self, name: str | None = None) -> list[ImageVersion]: ...

    def hosts_using(self, name: str, version: int) -> list[str]: ...


def versions_to_remove(store: ImageStore, name: str, version: int | None, *, force: bool = False) -> list[int]:
    """`images rm NAME vN` (or every version: `version` None), newest first. NotFound for an image or version
    that does not exist; Conflict while a host is assigned to one of them, unless `force`."""
    have = [iv.version for iv in store.versions(name)]
    if not have:
        known = sorted({iv.name for iv in store.versions()})
        raise NotFound(f"no image named {name!r}" + (f" (images: {', '.join(known)})" if known else
                                                     " (no images yet: use getimage)"))
    if version is not None and version not in have:
        raise NotFound(f"image {name} has no version v{version} (it has {', '.join(f'v{v}' for v in have)})")
    targets = sorted(have if version is None else [version], reverse=True)
    if not force:
        for n in targets:
            users = store.hosts_using(name, n)
            if users:
                raise Conflict(f"{name} v{n} is assigned to host(s) {', '.join(users)}; reassign them first "
                               "or use --force")
    return targets
