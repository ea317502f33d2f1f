"""The test lab: network namespaces, real DHCP clients, reference servers and QEMU VMs.

Every system and e2e test builds its network with `Lab` (see netns.py); nothing here touches the
host's interfaces, routes or /etc (hostguard.py proves the last part).
"""
