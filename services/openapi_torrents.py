"""OpenAPI paths of the BitTorrent transport (services/torrents.py); merged into services/openapi.py's document."""

from __future__ import annotations

from typing import Any

_MAC = {"name": "mac", "in": "path", "required": True, "schema": {"type": "string"},
        "description": "the installing host's MAC address"}
_KEY = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"},
        "description": "the install's torrent key (in the URLs of the host's torrent)"}
_BENCODE = {"description": "bencoded tracker answer (BEP 3; compact peers, BEP 23) or failure reason",
            "content": {"text/plain": {"schema": {"type": "string", "format": "binary"}}}}


def _plain(description: str) -> dict[str, Any]:
    """An error answer: JSON {"error": why} (domain errors, mapped in one place)."""
    return {"description": description, "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Error"}}}}


TORRENT_PATHS: dict[str, Any] = {
    "/install/{mac}/torrent": {
        "get": {
            "summary": "The host's torrent of its image version (private; announce and web-seed URLs carry the "
                       "host's key); same rules as its script: from its address, with its fetch nonce or install "
                       "token, while due to install. ?webseed=1 adds the web seed (url-list)",
            "security": [{"install": []}],
            "parameters": [_MAC, {"name": "webseed", "in": "query", "required": False,
                                  "schema": {"type": "string", "enum": ["0", "1"]}}],
            "responses": {
                "400": _plain("not a MAC address"),
                "200": {"description": "the .torrent", "content": {"application/x-bittorrent": {
                    "schema": {"type": "string", "format": "binary"}}}},
                "401": _plain("no or a wrong credential, or an expired install token"),
                "403": _plain("not asked from the host's address"),
                "404": _plain("no host has this MAC, or it is not due to install"),
                "409": _plain("the host has no registered image version"),
            },
        },
    },
    "/bt/{mac}/{key}/announce": {
        "get": {
            "summary": "Tracker announce for the host's torrent: peers are the other hosts installing the same "
                       "version and the imageserver's seeder; one entry per host, capped per torrent",
            "parameters": [_MAC, _KEY],
            "responses": {"200": _BENCODE, "400": _BENCODE, "401": _BENCODE, "403": _BENCODE, "404": _BENCODE,
                          "409": _BENCODE},
        },
    },
    "/bt/{mac}/{key}/seed/{torrent}/{path}": {
        "get": {
            "summary": "Web seed (BEP 19): a file of the host's torrent (NAME_vN/PATH), read-only, Range "
                       "supported; nothing outside the torrent's file list",
            "parameters": [_MAC, _KEY,
                           {"name": "torrent", "in": "path", "required": True, "schema": {"type": "string"},
                            "description": "the torrent's name, NAME_vN"},
                           {"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
                            "description": "a file's path in the torrent (deeper paths keep their slashes)"}],
            "responses": {"200": {"description": "the file", "content": {"application/octet-stream": {
                              "schema": {"type": "string", "format": "binary"}}}},
                          "206": {"description": "a range of it", "content": {"application/octet-stream": {
                              "schema": {"type": "string", "format": "binary"}}}},
                          "400": _plain("not a MAC address, or a refused path"),
                          "401": _plain("wrong key"), "403": _plain("not from the host's address"),
                          "404": _plain("not a file of this torrent, or no install"),
                          "409": _plain("the host has no registered image version")},
        },
    },
}
