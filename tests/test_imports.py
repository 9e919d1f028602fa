"""The core never imports a web framework, and the public surface is what we say it is."""

from __future__ import annotations

import subprocess
import sys

import productos


def test_core_import_and_client_leave_frameworks_unimported():
    code = (
        "import sys, productos\n"
        "c = productos.Client('phc_x', send=False)\n"
        "c.capture('e', distinct_id='u'); c.shutdown()\n"
        "bad = [m for m in ('django', 'flask') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == ""


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
