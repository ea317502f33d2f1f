"""The image catalog as GET /api/v1/images answers it: every registered version with who uses it.

The fields of `imageserver images list --json`, plus what the dashboard shows beside them; the recorded
disk layout stays out (it is long: `images show` and the install script have it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.views import doc, view_json
from state.db import Connection
from state.images import hosts_using, list_versions
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
    newest: bool = field(metadata=doc("the image's newest version: hosts without a pinned version install it"))
    hosts: list[str] = field(metadata=doc("hosts assigned to this version"))
    transport: str = field(metadata=doc("how its installers fetch it unless a host says otherwise",
                                        enum=list(TRANSPORTS)))


@dataclass(frozen=True, slots=True)
class ImageList:
    images: list[ImageView]

    def as_json(self) -> dict[str, object]:
        return view_json(self)


def catalog(conn: Connection) -> ImageList:
    versions = list_versions(conn)
    top = {iv.name: iv.version for iv in versions}  # ordered by version: the last one wins
    return ImageList([ImageView(name=iv.name, version=iv.version, created=iv.created, source=iv.source,
                                files=iv.files, bytes=iv.bytes, path=iv.path, note=iv.note,
                                newest=top[iv.name] == iv.version, hosts=hosts_using(conn, iv.name, iv.version),
                                transport=image_transport(conn, iv.name) or DEFAULT)
                      for iv in versions])
