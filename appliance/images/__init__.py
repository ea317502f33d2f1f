"""Images: capture from a master client (getimage), the catalog of versions, autoinstall scripts.

On disk, under the state directory:
    images/NAME/vN/            an image version's tree (immutable once registered)
    images/NAME/vN.manifest.gz its manifest: one JSON line per entry (type, mode, owner, size, hash, xattrs)
    images/.staging/           trees being pulled or committed (NAME.<pid>); never served
    images/.work/NEWNAME/      writable trees made by `images clone`, until `images commit`
    scripts/NAME.master        the autoinstall script of image NAME
"""
