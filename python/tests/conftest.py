"""Shared pytest setup: find the build tree, the source tree and the vectors."""
from __future__ import annotations

import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("MQE2E_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "..", "..")))
BUILD_DIR = os.environ.get("MQE2E_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
os.environ.setdefault("MQE2E_BUILD_DIR", BUILD_DIR)
# Test the package of this tree, not an installed one.
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..")))


def load_vectors(name: str):
    with open(os.path.join(SOURCE_DIR, "tests", "vectors", name), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def build_dir() -> str:
    return BUILD_DIR


@pytest.fixture(scope="session")
def source_dir() -> str:
    return SOURCE_DIR
