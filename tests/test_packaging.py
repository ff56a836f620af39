"""The wheel carries the migrations inside the package, never as a top-level `alembic`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_migrations_under_mcdata(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
                   cwd=ROOT, check=True, capture_output=True)
    wheel = next(tmp_path.glob("mcdata_collector-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "mcdata/alembic/env.py" in names
    assert "mcdata/alembic/script.py.mako" in names
    assert "mcdata/alembic/versions/0001_initial.py" in names
    assert not [n for n in names if n.startswith("alembic/")]
    assert not [n for n in names if n.startswith("mcdata/alembic/") and n.endswith("__init__.py")]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mcdata = mcdata.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
