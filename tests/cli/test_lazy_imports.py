"""Heavy imports stay lazy: a command loads only what it uses (STYLE.md, rule 8)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Runs `cryptoctl config` (table and JSON) in a fresh interpreter, then names every module
# of ``heavy`` that got loaded on the way.
SCRIPT = """
import sys
from cryptoctl.cli.app import app
for fmt in ("table", "json"):
    app(["config", "--format", fmt], prog_name="cryptoctl", standalone_mode=False)
heavy = sys.argv[1].split(",")
print("LOADED", ",".join(m for m in heavy if m in sys.modules))
"""


def loaded_by_config(tmp_path: Path, heavy: list[str]) -> tuple[list[str], str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(heavy)], capture_output=True, text=True,
        timeout=60, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CRYPTOCTL_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("LOADED"), result.stdout
    return [m for m in last.removeprefix("LOADED").strip().split(",") if m], result.stdout


def test_config_does_not_load_psutil_or_the_stack(tmp_path: Path) -> None:
    heavy = ["psutil", "cryptoctl.stack.local", "cryptoctl.stack.processes", "cryptoctl.render.stack",
             "apprise", "httpx"]
    loaded, out = loaded_by_config(tmp_path, heavy)
    assert loaded == []
    assert "kafka_bootstrap" in out and "setting" in out  # it did print both forms
    assert '"kafka_bootstrap"' in out


def test_the_check_sees_psutil_when_it_is_loaded(tmp_path: Path) -> None:
    """The check itself works: render.stack's callers do load the stack runtime."""
    script = "import sys, cryptoctl.stack.local; print('psutil' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "True", result.stderr
