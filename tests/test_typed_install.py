"""Types users can lean on: the typed example passes ``mypy --strict``, runs, and an editable
install is one mypy can follow (a .pth path entry, not setuptools' import-hook finder)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "typed_usage.py"


def _mypy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_typed_example_passes_mypy_strict():
    proc = _mypy("--strict", str(EXAMPLE), cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout


def test_mypy_strict_catches_a_wrong_type_in_user_code(tmp_path):
    # The check can fail: a script that misuses a return type is refused.
    script = tmp_path / "wrong.py"
    script.write_text("import productos\ncount: int = productos.capture('e')\n")
    proc = _mypy("--strict", str(script), cwd=ROOT)
    assert proc.returncode == 1 and "Incompatible types in assignment" in proc.stdout


def test_the_typed_example_runs(live_server):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(EXAMPLE), live_server.url], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = sorted(e["event"] for e in live_server.events if e["event"] != "$feature_flag_called")
    assert names == ["$exception", "$set", "checkout completed", "script started"]


@pytest.mark.skipif(shutil.which("git") is None and not (ROOT / "setup.py").exists(),
                    reason="needs the source tree")
def test_an_editable_install_is_followed_by_mypy(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(ROOT)],
        capture_output=True, text=True, timeout=600, check=False)
    if install.returncode != 0 and any(word in install.stderr for word in (
            "NewConnectionError", "Temporary failure in name resolution",
            "No matching distribution")):
        pytest.skip(f"the build requirements could not be fetched: {install.stderr[-300:]}")
    assert install.returncode == 0, install.stderr
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    pth = "".join(p.read_text() for p in Path(site.stdout.strip()).glob("__editable__*.pth"))
    assert pth.strip() == str(ROOT), pth  # a path entry, no "import ..._finder" hook
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent("""\
        import productos
        reveal_type(productos.capture)
        uuid: int = productos.capture("e")
    """))
    # From outside the tree, so mypy can only find productos through the install.
    proc = _mypy("--strict", "--python-executable", str(python), str(script), cwd=tmp_path)
    assert "Cannot find implementation" not in proc.stdout, proc.stdout
    assert "def (event: str" in proc.stdout, proc.stdout
    assert 'has type "str | None", variable has type "int"' in proc.stdout
