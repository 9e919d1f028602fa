"""The core never imports a web framework, and the public surface is what we say it is."""

from __future__ import annotations

import subprocess
import sys
from typing import List, Sequence

import productos

# Optional extras and outer layers: a bare `import productos` (or a client) never loads them.
OPTIONAL = ("django", "flask", "celery", "rest_framework", "redis", "re2", "sqlite3",
            "productos.cli", "productos.devserver", "productos.integrations")
# Loaded when first needed (the first request, the first retry, the first client, the first
# definitions to parse), so importing is quick.
LAZY = ("requests", "backoff", "platform", "uuid", "productos._flags.compiler",
        "productos._flags.regex_dialect")


def modules_loaded_by(code: str, names: Sequence[str]) -> List[str]:
    """Run code in a fresh interpreter; return which of names it left in sys.modules."""
    script = (f"{code}\nimport sys\n"
              f"print(','.join(m for m in {tuple(names)!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_core_import_and_client_leave_frameworks_unimported():
    code = (
        "import productos\n"
        "c = productos.Client('phc_x', send=False)\n"
        "c.capture('e', distinct_id='u'); c.shutdown()\n"
    )
    assert modules_loaded_by(code, OPTIONAL) == []


def test_importing_productos_loads_no_optional_or_lazy_module():
    assert modules_loaded_by("import productos", OPTIONAL) == []
    assert modules_loaded_by("import productos", LAZY) == []


def test_the_module_check_can_see_a_loaded_module():
    assert modules_loaded_by("import sqlite3, productos", OPTIONAL) == ["sqlite3"]


def test_all_names_exist_and_are_documented():
    for name in productos.__all__:
        assert hasattr(productos, name), name
        value = getattr(productos, name)
        if callable(value):
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"


def test_public_client_methods_have_docstrings():
    public = [n for n in dir(productos.Client) if not n.startswith("_")]
    for name in public:
        member = getattr(productos.Client, name)
        if callable(member):
            assert (member.__doc__ or "").strip(), f"Client.{name} has no docstring"


def test_py_typed_marker_ships():
    from pathlib import Path

    assert (Path(productos.__file__).parent / "py.typed").exists()


def test_cli_prints_its_version():
    out = subprocess.run([sys.executable, "-m", "productos", "--version"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.strip() == f"productos {productos.__version__}"


def test_uuid_objects_are_recognised_though_productos_does_not_import_uuid():
    code = (
        "import uuid, json, productos\n"
        "from productos.testing import RecordingSender\n"
        "c = productos.Client('phc_x', send=False)\n"
        "u = uuid.UUID('0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b')\n"
        "assert c.capture('e', distinct_id='d', uuid=u) == str(u)\n"
        "seen = []\n"
        "c2 = productos.Client('phc_x', before_send=lambda m: seen.append(m) or m, send=False)\n"
        "assert c2.capture('e', distinct_id='d', properties={'id': u}) is not None\n"
        "assert seen and seen[0]['properties']['$os'] and seen[0]['uuid']\n"
        "c.shutdown(); c2.shutdown()\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]
