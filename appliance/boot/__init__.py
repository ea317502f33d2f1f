"""What bare machines boot: the installer's kernel and initrd (bootenv, installer/ with the shell that runs
in it), the distro boot binaries served over TFTP/HTTP (bootfiles), and USB/ISO boot media (bootmedia).

Imports neither cli/, daemon/ nor images/ (lint-imports).
"""
