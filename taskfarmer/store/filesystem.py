"""Which I/O discipline a workdir needs: decided from its filesystem (``statfs`` magic).

A local filesystem has one page cache and one view of every file: descriptors may stay open
across lock holds (the fast path). Any filesystem shared between nodes gets the coherent
discipline (see the package docstring): NFS, whose clients cache pages and attributes and are
coherent only at open/close and lock points; and Lustre, GPFS (Spectrum Scale), CephFS and
BeeGFS, which keep POSIX coherence between clients with their own distributed locks (BeeGFS
only in some cache modes) — for them the discipline costs an open and a close per file per lock
hold, little against their own round trips, and it does not depend on how they are tuned.
A filesystem not known to be local (FUSE, SMB, 9p, anything new) is treated as shared.

``TASKFARMER_IO`` overrides the choice: ``coherent``, ``fast`` or ``auto`` (the default).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError

IO_ENV = "TASKFARMER_IO"
IO_MODES = ("auto", "coherent", "fast")

#: ``statfs(2)`` ``f_type`` of filesystems with a single page cache (linux/magic.h).
LOCAL_MAGIC = {
    0xEF53: "ext2/3/4",
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0x01021994: "tmpfs",
    0x858458F6: "ramfs",
    0x794C7630: "overlayfs",
    0x2FC12FC1: "zfs",
    0xF2F52010: "f2fs",
    0xCA451A4E: "bcachefs",
    0x3153464A: "jfs",
    0x52654973: "reiserfs",
}
#: Shared filesystems, named in messages (all of them get the coherent discipline).
SHARED_MAGIC = {
    0x6969: "nfs",
    0x0BD00BD0: "lustre",
    0x47504653: "gpfs",
    0x00C36400: "cephfs",
    0x19830326: "beegfs",
    0xFF534D42: "cifs",
    0xFE534D42: "smb2",
    0x01021997: "9p",
    0x65735546: "fuse",
}


class _StatFs(ctypes.Structure):
    # struct statfs on 64-bit Linux starts with __fsword_t f_type; the rest is padding here.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 120)]


def filesystem_magic(path: Path) -> int | None:
    """``f_type`` of the filesystem holding ``path`` (or its nearest existing ancestor)."""
    # The C library is in this process already: CDLL(None) finds statfs among its symbols.
    # (ctypes.util.find_library ran /sbin/ldconfig -p, a process each time: twice per start.)
    libc = ctypes.CDLL(None, use_errno=True)
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    buffer = _StatFs()
    if libc.statfs(os.fsencode(probe), ctypes.byref(buffer)) != 0:
        return None
    return buffer.f_type & 0xFFFFFFFF


def shared_filesystem(path: Path) -> bool:
    """True unless ``path`` is on a filesystem known to be local (one page cache)."""
    return filesystem_magic(path) not in LOCAL_MAGIC


def coherent_io(workdir: Path, environ: Mapping[str, str]) -> bool:
    """True if the state files of ``workdir`` need the coherent discipline."""
    mode = environ.get(IO_ENV, "auto") or "auto"
    if mode not in IO_MODES:
        raise ConfigError(f"{mode!r} is not one of {', '.join(IO_MODES)}", option=IO_ENV)
    if mode != "auto":
        return mode == "coherent"
    return shared_filesystem(workdir)


def mount_type(path: Path, mountinfo: str | None = None) -> str | None:
    """The filesystem type (``nfs``, ``nfs4``, ``ext4`` ...) of the mount holding ``path``,
    from ``/proc/self/mountinfo`` (or the text ``mountinfo``); None if it cannot be told.

    ``statfs`` cannot tell NFSv3 from NFSv4 (one magic number); their lock managers differ.
    """
    return mount_entry(path, mountinfo)[0]


def mount_entry(path: Path, mountinfo: str | None = None) -> tuple[str | None, dict[str, str]]:
    """The filesystem type of the mount holding ``path`` and its options (per-mount and
    superblock ones, ``{"nocto": "", "acregmax": "60", ...}``), as :func:`mount_type` reads
    them; ``(None, {})`` if they cannot be told. The NFS client's caching options
    (``nocto``, ``actimeo``, ``acregmax``) show among the superblock options."""
    if mountinfo is None:
        try:
            with open("/proc/self/mountinfo") as handle:
                mountinfo = handle.read()
        except OSError:
            return None, {}
    target = os.path.abspath(path)
    best, found, options = -1, None, ""
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if " - " not in line or len(fields) < 6:
            continue
        point = fields[4].encode().decode("unicode_escape")  # spaces are written \040
        after = line.split(" - ", 1)[1].split(" ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:  # the last of equal mount points is on top
            best, found = len(point), after[0]
            options = fields[5] + "," + (after[2] if len(after) > 2 else "")
    parsed = dict(option.partition("=")[::2] for option in options.split(",") if option)
    return found, parsed
