"""The store's schema as an ordered list of migrations; PRAGMA user_version records how far a database is.

Append a migration to change the schema; never edit one that has shipped. Views hold no data: each is
declared once in VIEWS, and state/db.migrate makes the stored one equal to it (migration 9 made the first
`hosts_effective`; a later definition replaces it when the database is opened).
Addresses are stored as integers (ordering and range scans), MACs as 'aa:bb:cc:dd:ee:ff'.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE leases (
        mac        TEXT PRIMARY KEY,
        ip         INTEGER NOT NULL UNIQUE,
        subnet     TEXT NOT NULL,
        starts     REAL NOT NULL,
        expires    REAL NOT NULL,
        client_id  BLOB,
        hostname   TEXT
    );
    CREATE INDEX leases_expires ON leases(expires);

    CREATE TABLE reservations (
        mac        TEXT PRIMARY KEY,
        ip         INTEGER NOT NULL UNIQUE,
        hostname   TEXT,
        source     TEXT NOT NULL DEFAULT 'manual',   -- manual | makedhcpstatic | on-install | on-assign | addclients
        created    REAL NOT NULL
    );

    -- Addresses a client DECLINEd (in use by someone else): not offered until 'until'.
    CREATE TABLE quarantine (
        ip         INTEGER PRIMARY KEY,
        mac        TEXT,
        until      REAL NOT NULL
    );

    CREATE TABLE machines (
        mac          TEXT PRIMARY KEY,
        first_seen   REAL NOT NULL,
        last_seen    REAL NOT NULL,
        arch         INTEGER,
        vendor_class TEXT,
        user_class   TEXT,
        uuid         TEXT,
        relay        TEXT,
        subnet       TEXT,
        hostname     TEXT
    );

    CREATE TABLE images (
        name       TEXT NOT NULL,
        version    INTEGER NOT NULL,
        path       TEXT NOT NULL,
        created    REAL NOT NULL,
        source     TEXT,
        files      INTEGER,
        bytes      INTEGER,
        layout     TEXT,           -- JSON: the master client's disk layout
        note       TEXT,
        PRIMARY KEY (name, version)
    );

    CREATE TABLE hosts (
        name        TEXT PRIMARY KEY,
        mac         TEXT UNIQUE,
        ip          INTEGER UNIQUE,
        image       TEXT,
        version     INTEGER,        -- NULL: the image's newest version
        state       TEXT NOT NULL DEFAULT 'new',   -- new | assigned | installing | installed | failed
        created     REAL NOT NULL,
        updated     REAL NOT NULL,
        last_seen   REAL,
        install_token TEXT,
        running_version INTEGER,
        script      TEXT            -- per-host override of the autoinstall script
    );

    CREATE TABLE install_events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        host    TEXT NOT NULL,
        mac     TEXT,
        time    REAL NOT NULL,
        stage   TEXT NOT NULL,
        detail  TEXT              -- JSON
    );
    CREATE INDEX install_events_host ON install_events(host, id);
    """,
    # 2: updateclient on installed hosts: when a host last finished an update, and every update's reports
    # (kept apart from install_events so an update never shows up as an install in a host's timeline)
    """
    ALTER TABLE hosts ADD COLUMN last_update REAL;

    CREATE TABLE update_events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        host    TEXT NOT NULL,
        time    REAL NOT NULL,
        stage   TEXT NOT NULL,      -- start | done | failed | autoinstall
        image   TEXT,
        version INTEGER,
        detail  TEXT
    );
    CREATE INDEX update_events_host ON update_events(host, id);
    """,
    # 3: when the install token was issued: it expires (state/credentials.py), NULL = before this column
    """
    ALTER TABLE hosts ADD COLUMN token_issued REAL;
    """,
    # 4: hosts by state (/metrics at every scrape) from the index, not a pass over every hosts row
    """
    CREATE INDEX hosts_state ON hosts(state);
    """,
    # 5: how a host's installer fetches its image (NULL: the image's default, else rsync), and per-image
    # defaults (state/transports.py)
    """
    ALTER TABLE hosts ADD COLUMN transport TEXT;

    CREATE TABLE image_settings (
        name       TEXT PRIMARY KEY,
        transport  TEXT NOT NULL
    );
    """,
    # 6: on a satellite, the hosts it took from its primary's list (state/mirror.py): the ones the primary
    # may remove again; hosts the satellite's own operator added are not in it
    """
    CREATE TABLE mirrored_hosts (
        name TEXT PRIMARY KEY
    );
    """,
    # 7: each host's BMC (state/bmcs.py): address, user, password, optional certificate pin, and its last
    # power answer. The password stays in this 0600 database (state/permissions.py) and leaves it only for
    # the BMC. A removed host takes its BMC with it: a trigger rather than a foreign key, because a
    # migration that rebuilds `hosts` (create, copy, drop, rename) would cascade-delete every BMC through a
    # foreign key; such a migration must create this trigger again (it goes with the dropped table)
    """
    CREATE TABLE bmcs (
        host        TEXT PRIMARY KEY,   -- hosts.name
        address     TEXT NOT NULL,      -- ipmi://HOST[:PORT] | redfish://HOST[:PORT] | https://HOST[:PORT]
        username    TEXT NOT NULL,
        password    TEXT NOT NULL,
        fingerprint TEXT,               -- SHA-256 of the BMC's TLS certificate (hex), NULL: not pinned
        power       TEXT,               -- on | off: the last answer
        error       TEXT,               -- the last call's failure
        checked     REAL                -- when the BMC last answered (or failed)
    );
    CREATE TRIGGER hosts_delete_bmc AFTER DELETE ON hosts BEGIN
        DELETE FROM bmcs WHERE host = old.name;
    END;
    """,
    # 8: the CPU architecture an image was captured from (protocols/arch.py names: x86_64, arm64, ...), so a
    # host refuses an image its machine cannot run. Every image captured before was an amd64 master's: they
    # are x86_64, and their note says it was assumed
    """
    ALTER TABLE images ADD COLUMN arch TEXT;
    UPDATE images SET arch = 'x86_64',
        note = COALESCE(note || '; ', '') || 'architecture x86_64 assumed (captured before images recorded it)';
    """,
    # 9: profiles (state/profiles.py): named settings hosts inherit unless they set their own. A host names
    # its profile (NULL: none) and may carry its own kernel arguments; `hosts_effective` is each host with
    # what it inherits filled in (the one home of "own value, else its profile's"): the boot decision, the
    # install script, rsync admission and "which hosts use this image" read it. A profile's version applies
    # only with its own image (a host that picks another image does not inherit a version of this one).
    # `power_states` is each host's last known power answer (state/bmcs.py), whether its BMC is its own or
    # its profile's; the bmcs table's power columns are read no more (copied here once).
    """
    ALTER TABLE hosts ADD COLUMN profile TEXT;
    ALTER TABLE hosts ADD COLUMN kernel_args TEXT;
    CREATE INDEX hosts_profile ON hosts(profile);

    CREATE TABLE profiles (
        name         TEXT PRIMARY KEY,
        image        TEXT,
        version      INTEGER,
        transport    TEXT,
        kernel_args  TEXT,
        bmc_address  TEXT,           -- a template: {host} is the host's name
        bmc_username TEXT,
        bmc_password TEXT,           -- 0600 like the bmcs table's, never shown
        created      REAL NOT NULL,
        updated      REAL NOT NULL
    );

    CREATE VIEW hosts_effective AS
    SELECT h.name, h.mac, h.ip,
           coalesce(h.image, p.image) AS image,
           CASE WHEN h.image IS NULL OR h.image = p.image THEN coalesce(h.version, p.version)
                ELSE h.version END AS version,
           h.state, h.created, h.updated, h.last_seen, h.install_token, h.running_version,
           coalesce(h.transport, p.transport) AS transport,
           h.token_issued, h.script, h.last_update, h.profile,
           coalesce(h.kernel_args, p.kernel_args) AS kernel_args
    FROM hosts h LEFT JOIN profiles p ON p.name = h.profile;

    CREATE TABLE power_states (
        host     TEXT PRIMARY KEY,   -- hosts.name
        power    TEXT,               -- on | off: the last answer
        error    TEXT,               -- the last call's failure: the host's error
        checked  REAL NOT NULL       -- when the BMC last answered (or failed)
    );
    INSERT INTO power_states (host, power, error, checked)
        SELECT host, power, error, checked FROM bmcs WHERE checked IS NOT NULL;
    CREATE TRIGGER hosts_delete_power AFTER DELETE ON hosts BEGIN
        DELETE FROM power_states WHERE host = old.name;
    END;
    """,
    # 10: hardware inventories (state/inventories.py: what a machine's installer found, per MAC, kept when a
    # host goes: it describes the machine) and root-device hints (state/root_hints.py: which disk an
    # install goes to, per host or per image; a host's go with it, by a trigger as with bmcs)
    """
    CREATE TABLE inventories (
        mac        TEXT PRIMARY KEY,
        received   REAL NOT NULL,
        inventory  TEXT NOT NULL      -- JSON: domain.inventory.Inventory
    );
    CREATE TABLE root_device_hints (
        kind   TEXT NOT NULL,         -- host | image
        name   TEXT NOT NULL,         -- hosts.name | images.name
        hints  TEXT NOT NULL,         -- JSON: domain.rootdevice.RootDeviceHints
        PRIMARY KEY (kind, name)
    );
    CREATE TRIGGER hosts_delete_root_hints AFTER DELETE ON hosts BEGIN
        DELETE FROM root_device_hints WHERE kind = 'host' AND name = old.name;
    END;
    """,
    # 11: root-device hints per profile too (root_device_hints.kind 'profile', inherited host > profile >
    # image: the hosts_effective view of VIEWS below); a removed profile's go with it
    """
    CREATE TRIGGER profiles_delete_root_hints AFTER DELETE ON profiles BEGIN
        DELETE FROM root_device_hints WHERE kind = 'profile' AND name = old.name;
    END;
    """,
)

# --------------------------------------------------------------------------- views

# The hosts columns every reader selects, in the order of state.hosts.Host's fields.
HOST_COLUMNS = ("name", "mac", "ip", "image", "version", "state", "created", "updated", "last_seen",
                "install_token", "running_version", "transport", "token_issued", "script", "last_update", "profile",
                "kernel_args")

# The one home of "a host's own value, else its profile's": per inherited column, the value in force made of
# the host's own (h.) and its profile's (p.). The `hosts_effective` view is built from it, and
# state.hosts.inherited applies the same expressions to a host not written yet (the checks of a change), so
# what a host boots and what its change is checked against cannot differ.
INHERITED = {
    "image": "coalesce(h.image, p.image)",
    # a profile's version applies only with its own image (a host that picks another does not inherit it)
    "version": "CASE WHEN h.image IS NULL OR h.image = p.image THEN coalesce(h.version, p.version) "
               "ELSE h.version END",
    "transport": "coalesce(h.transport, p.transport)",
    "kernel_args": "coalesce(h.kernel_args, p.kernel_args)",
}
EFFECTIVE_COLUMNS = ", ".join(f"{INHERITED[c]} AS {c}" if c in INHERITED else f"h.{c}" for c in HOST_COLUMNS)
PROFILE_JOIN = "LEFT JOIN profiles p ON p.name = h.profile"

VIEWS = {
    # Each host with what it inherits filled in: what the boot decision, the install script, rsync admission,
    # updates and "which hosts use this image" read. Its root-device hints (state/root_hints.py) are the
    # host's own, else its profile's, else those of the image it installs; root_hints_from says whose. Its BMC
    # (bmc_from) is its own (the bmcs table), else its profile's defaults where they are complete (address,
    # user and password): what the power drivers, the poll and the host view take.
    "hosts_effective":
        f"CREATE VIEW hosts_effective AS SELECT {EFFECTIVE_COLUMNS}, "
        "coalesce(rh.hints, rp.hints, ri.hints) AS root_hints, "
        "CASE WHEN rh.hints IS NOT NULL THEN 'host' WHEN rp.hints IS NOT NULL THEN 'profile' "
        "WHEN ri.hints IS NOT NULL THEN 'image' END AS root_hints_from, "
        "CASE WHEN EXISTS (SELECT 1 FROM bmcs b WHERE b.host = h.name) THEN 'host' "
        "WHEN p.bmc_address IS NOT NULL AND p.bmc_username IS NOT NULL AND p.bmc_password IS NOT NULL "
        "THEN 'profile' END AS bmc_from "
        f"FROM hosts h {PROFILE_JOIN} "
        "LEFT JOIN root_device_hints rh ON rh.kind = 'host' AND rh.name = h.name "
        "LEFT JOIN root_device_hints rp ON rp.kind = 'profile' AND rp.name = h.profile "
        f"LEFT JOIN root_device_hints ri ON ri.kind = 'image' AND ri.name = {INHERITED['image']}",
}
