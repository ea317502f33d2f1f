"""The lab: network namespaces, real DHCP clients, reference servers and QEMU VMs.

`make demo` and every system and e2e test build their network with `Lab` (see netns.py); it lives in
the package (not under tests/) so the demo works from an installed imageserver too. Nothing here
touches the host's interfaces, routes or /etc (hostguard.py proves the last part).
"""
