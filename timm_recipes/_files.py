"""File-system helpers shared by the writers: modes that follow the user's umask.

``tempfile.mkstemp`` / ``mkdtemp`` create 0600 files and 0700 folders whatever the umask says; a file renamed into
place from there would keep that mode, and on a shared file system colleagues could not read the run or the export.
:func:`apply_umask` gives such a path the mode an ordinary ``open`` / ``mkdir`` would have given it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = ["apply_umask", "current_umask"]

_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask (read without changing it, where ``/proc`` has it; else set and restored under a lock)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike[str], *, directory: bool = False) -> Path:
    """Give ``path`` mode ``0o777 & ~umask`` (a folder) or ``0o666 & ~umask`` (a file); returns it."""
    path = Path(path)
    if os.name != "nt":
        os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())
    return path


def check_writable(folder: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Check, before any work, that ``folder`` can be created or written to; nothing is created.

    The nearest existing ancestor must be a writable folder (``os.access``; a file system mounted read-only counts
    as not writable).

    Raises:
        PermissionError: naming ``what``, the folder and the cause.
    """
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise NotADirectoryError(f"{what} {str(folder)!r} cannot be created: {str(probe)!r} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        here = "" if probe == folder else f" ({str(probe)!r}, where it would be created)"
        raise PermissionError(f"{what} {str(folder)!r} is not writable{here}: permission denied or read-only")
    try:
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            raise PermissionError(f"{what} {str(folder)!r} is on a read-only file system")
    except (AttributeError, OSError):
        pass
    return folder
