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
    "uvicorn>=0.29",
    "hypercorn>=0.16",
    "daphne>=4.0",
    # The static checks .ci/run makes: types, and the import contract in pyproject.toml.
    "mypy>=1.8",
    "types-python-dateutil",
    "import-linter>=2.5",  # the "protected" contract type
]

setup(
    name="productos",
    version=VERSION,
    description="Product analytics, feature flags and experiments for Python, speaking PostHog's API.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["productos", "productos.*"]),
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
    },
    entry_points={"console_scripts": ["productos=productos.cli:main"]},
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
