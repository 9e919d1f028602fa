"""Package metadata for productos: the one place it lives."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^VERSION = "([^"]+)"', (HERE / "productos" / "version.py").read_text(), re.M
).group(1)

TEST_REQUIRES = [
    "pytest>=7",
    "pytest-timeout>=2",
    "responses>=0.23",
    "hypothesis>=6",
    "freezegun>=1.2",
    "ruff>=0.5",
    "gunicorn>=21; sys_platform != \"win32\"",
    "celery>=5.2",
    "django>=4.2",
    "flask>=2.2",
    "djangorestframework>=3.14",
    "selenium>=4.10",
    "google-re2>=1.1",  # the [re2] extra, so tests run both regex engines
    "redis>=4.5",  # the [redis] extra: the shared flag definitions cache (with redis-server)
    "uvicorn>=0.29",
    "hypercorn>=0.16",
    "daphne>=4.0",
    # asyncio and ASGI: the AsyncClient under uvloop, the middleware under FastAPI/Starlette.
    "uvloop>=0.19; sys_platform != \"win32\"",
    "fastapi>=0.100",
    "starlette>=0.27",
    # The static checks .ci/run makes: types, and the import contract in pyproject.toml.
    "mypy>=1.8",
    "types-python-dateutil",
    "import-linter>=2.5",  # the "protected" contract type
    "pyarrow>=14",  # the [parquet] extra: the dev server's Parquet export is read back in tests
    # The [openfeature] and [opentelemetry] extras, and the SDK's in-memory span exporter.
    "openfeature-sdk>=0.8",
    "opentelemetry-api>=1.20",
    "opentelemetry-sdk>=1.20",
    # PostHog's own SDK, the reference the migration tests run every scenario against (and
    # the benchmarks measure against). Tests only: productos never imports it.
    "posthog==7.91.1",
]

setup(
    name="productos",
    version=VERSION,
    description="Product analytics, feature flags and experiments for Python, speaking PostHog's API.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["productos", "productos.*"]),
    # The package sits at the root: saying so makes `pip install -e .` a plain .pth path entry,
    # which type checkers follow, instead of setuptools' import-hook finder, which they cannot.
    package_dir={"": "."},
    package_data={"productos": ["py.typed"]},
    python_requires=">=3.9",
    install_requires=[
        "requests>=2.28,<3",
        "backoff>=2.0",
        "python-dateutil>=2.8",
    ],
    extras_require={
        "test": TEST_REQUIRES,
        "dev": TEST_REQUIRES,
        "django": ["django>=4.2"],
        "flask": ["flask>=2.2"],
        "redis": ["redis>=4.5"],
        "celery": ["celery>=5.2"],
        # A linear-time regex engine (RE2) for regex flag filters, like the server's.
        "re2": ["google-re2>=1.1"],
        # The dev server's `events export --format parquet` (typed columns for a warehouse).
        "parquet": ["pyarrow>=14"],
        # productos.openfeature.ProductosProvider, for the OpenFeature SDK.
        "openfeature": ["openfeature-sdk>=0.8"],
        # productos.integrations.opentelemetry.OpenTelemetryHook.
        "opentelemetry": ["opentelemetry-api>=1.20"],
    },
    entry_points={
        "console_scripts": ["productos=productos.cli:main"],
        # Fixtures only (productos_events, productos_flags): inert unless a test asks for one.
        "pytest11": ["productos = productos.pytest_plugin"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Typing :: Typed",
    ],
)
