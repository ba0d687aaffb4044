import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
ROOT = Path(__file__).resolve().parent.parent


def lycobench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, in a subprocess (no fault injection unless asked)."""
    full_env = {k: v for k, v in os.environ.items() if k != "LYCOBENCH_FAULT"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "lycobench", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=900,
    )


@pytest.fixture
def cli():
    return lycobench
