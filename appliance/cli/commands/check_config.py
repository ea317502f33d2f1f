"""`imageserver check-config`: validate a config file without starting anything."""

from __future__ import annotations

import argparse

from appliance.cli.commands._common import add_config_option, load


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-config", help="validate the configuration file and print the effective settings",
                       description="Exit 0 and print a summary if the file is valid; exit 2 naming the key "
                                   "and the problem if not.")
    add_config_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load(args)
    a = cfg.appliance
    print(f"config      {cfg.source}")
    print(f"state_dir   {a.state_dir}")
    print(f"interface   {a.interface or '(any)'}   address {a.address or '(unset)'}   domain {a.domain}")
    if cfg.dhcp.enabled:
        print(f"dhcp        {cfg.dhcp.mode} on port {cfg.dhcp.port}")
        for s in cfg.dhcp.subnets:
            print(f"  subnet    {s.subnet} pool {s.pool_first}-{s.pool_last} router {s.router or '-'} "
                  f"dns {','.join(map(str, s.dns)) or '-'} lease {s.lease_time}s")
    else:
        print("dhcp        disabled")
    print(f"tftp        {'port ' + str(cfg.tftp.port) if cfg.tftp.enabled else 'disabled'}")
    print(f"http        {f'{cfg.http.listen}:{cfg.http.port}' if cfg.http.enabled else 'disabled'}")
    https = cfg.https
    print(f"https       {f'{https.listen or cfg.http.listen}:{https.port}' if https.enabled else 'disabled'}")
    print(f"dns         {'port ' + str(cfg.dns.port) if cfg.dns.enabled else 'disabled'}")
    return 0
