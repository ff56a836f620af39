"""A source's pair list kept on disk for a day, so that the hourly steady state is one request.

The file is read with the same suspicion as the network: trusted only if it is a regular file of ours
(no symlink), writable by nobody else, in a folder only we can write (or a sticky one), not too big, and
fresh; the caller then checks its content exactly like a downloaded answer. Anything else is one warning
and a download. Written 0600 in a 0700 folder, replaced atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mcdata.private_files import check_folder, make_private_dir, open_private

log = logging.getLogger("mcdata")

MAX_AGE = timedelta(days=1)
MAX_BYTES = 16 * 1024 * 1024  # Kraken's trimmed pair list is well under 1 MB; Binance's markets a few MB


class PairListCache:
    def __init__(self, folder: Path | None, source: str, base_url: str, now: Callable[[], datetime],
                 kind: str = "pairs") -> None:
        self.folder = folder
        self.source = source
        self.now = now
        digest = hashlib.sha256(base_url.encode()).hexdigest()[:12]
        self.name = f"{source}-{kind}-{digest}.json"

    def _path(self) -> Path | None:
        """The cache file's path, or None (one warning) when the cache folder is unusable or unsafe."""
        if self.folder is None:
            return None
        try:
            make_private_dir(self.folder)
            check_folder(self.folder)
        except OSError as exc:
            log.warning("%s: not caching the pair list: %s", self.source, exc)
            self.folder = None
            return None
        return self.folder / self.name

    def load(self, rebuild: Callable[[dict[str, Any]], Any]) -> Any | None:
        """`rebuild(data)` of the cached data when it is fresh and safe; None on any doubt (a warning, unless
        it is merely old). `rebuild` checks the content as it checks a download, raising on a problem."""
        path = self._path()
        if path is None or not path.exists():
            return None
        try:
            fd = open_private(path, os.O_RDONLY)
            with os.fdopen(fd, "rb") as file:
                if os.fstat(file.fileno()).st_size > MAX_BYTES:
                    raise ValueError(f"larger than {MAX_BYTES:,} bytes")
                data = json.loads(file.read(MAX_BYTES + 1))
            fetched = datetime.fromisoformat(data["fetched_at"])
            if fetched.tzinfo is None:
                raise ValueError("fetched_at has no time zone")
            if not timedelta(0) <= self.now() - fetched < MAX_AGE:
                return None  # old: download again, quietly
            return rebuild(data)
        except Exception as exc:  # a cache in any doubt is a download, never a failure
            log.warning("%s: ignoring the pair cache %s (%s); downloading the pair list", self.source, path,
                        str(exc)[:200] or exc.__class__.__name__)
            return None

    def save(self, data: dict[str, Any]) -> None:
        path = self._path()
        if path is None:
            return
        try:
            with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
                json.dump({"fetched_at": self.now().isoformat(), **data}, tmp)  # created 0600
            os.replace(tmp.name, path)
        except (OSError, TypeError, ValueError) as exc:
            log.warning("%s: not caching the pair list in %s: %s", self.source, path.parent, exc)
