"""Profiles over the API: named settings hosts inherit unless they set their own.

  GET    /api/v1/profiles          every profile with how many hosts inherit from it
  POST   /api/v1/profiles          {"name", "image"?, "version"?, "transport"?, "kernel_args"?, "bmc_address"?,
                                   "bmc_username"?, "bmc_password"?}: a new profile
  GET    /api/v1/profiles/{name}   one profile and the hosts inheriting from it
  PATCH  /api/v1/profiles/{name}   the keys given change (null or "" clears); its hosts follow at once
  DELETE /api/v1/profiles/{name}   refused (409, naming the hosts) while hosts inherit from it
JSON <-> domain.profiles; the BMC password is never shown.
"""

from __future__ import annotations

from aiohttp import web

from domain import profiles
from domain.profiles import AddProfile, ProfileInUse, ProfileList, ProfileSettings, ProfileView
from services.auth import Auth
from services.routes import Call, Param, Route, error, ok
from state.profiles import StoredProfiles

_NAME = {"name": Param("profile name")}


def _store(call: Call[object]) -> StoredProfiles:
    return StoredProfiles(call.ctx.store.reader)


async def list_profiles(call: Call[None]) -> ProfileList:
    return profiles.list_profiles(_store(call))


async def show_profile(call: Call[None]) -> ProfileView:
    return profiles.show_profile(_store(call), call.request.match_info["name"])


async def add_profile(call: Call[AddProfile]) -> ProfileView:
    await call.body()  # the shape
    name, ops = profiles.add_profile(_store(call), await call.raw(), call.ctx.clock())
    for op in ops:
        await call.ctx.store.journal.run(op)
    return profiles.show_profile(_store(call), name)


async def change_profile(call: Call[ProfileSettings]) -> ProfileView:
    await call.body()
    name = call.request.match_info["name"]
    for op in profiles.change_profile(_store(call), name, await call.raw(), call.ctx.clock()):
        await call.ctx.store.journal.run(op)
    return profiles.show_profile(_store(call), name)


async def remove_profile(call: Call[None]) -> ProfileView | web.Response:
    name = call.request.match_info["name"]
    try:
        view, op = profiles.remove_profile(_store(call), name)
        taken = await call.ctx.store.journal.run(op)
        if taken:  # a host took it up between the check and the write
            raise profiles.in_use(name, taken)
    except profiles.InUse as e:
        return call.answer(ProfileInUse(str(e), e.hosts), status=409)
    return view


ROUTES = [
    Route("GET", "/api/v1/profiles", list_profiles, "Every profile, with how many hosts inherit from it",
          {200: ok("the profiles", ProfileList)}, auth=Auth.READER),
    Route("POST", "/api/v1/profiles", add_profile,
          "A new profile: image, version, transport, kernel arguments and BMC defaults that hosts naming it "
          "inherit unless they set their own",
          {201: ok("the profile", ProfileView), 400: error("malformed field"), 409: error("the name is taken")},
          auth=Auth.OPERATOR, body=AddProfile),
    Route("GET", "/api/v1/profiles/{name}", show_profile, "One profile and the hosts inheriting from it",
          {200: ok("the profile", ProfileView), 404: error("no such profile")}, auth=Auth.READER,
          params=_NAME),
    Route("PATCH", "/api/v1/profiles/{name}", change_profile,
          'Change a profile (null or "" clears a setting): every host inheriting it follows at once',
          {200: ok("the profile", ProfileView), 400: error("malformed field"), 404: error("no such profile")},
          auth=Auth.OPERATOR, body=ProfileSettings, params=_NAME),
    Route("DELETE", "/api/v1/profiles/{name}", remove_profile,
          "Remove a profile; refused while hosts inherit from it (the answer names them)",
          {200: ok("the profile removed", ProfileView), 404: error("no such profile"),
           409: ok("hosts still inherit from it", ProfileInUse)}, auth=Auth.OPERATOR, params=_NAME),
]
