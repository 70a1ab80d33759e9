"""The example in docs/sdk-python.md runs, in a fresh venv with only the built wheel."""

import re
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_the_documented_example_runs_from_a_fresh_install(tmp_path):
    text = (REPO / "docs/sdk-python.md").read_text()
    example = re.search(r"## Example\n.*?```python\n(.*?)```", text, re.S).group(1)
    wheels = sorted((REPO / "target/wheels").glob("headwater-*.whl"))
    assert wheels, "build the wheel first (make python-wheel)"
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin/python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheels[-1])], check=True)
    script = tmp_path / "example.py"
    script.write_text(example)
    done = subprocess.run([python, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.match(r"stored at \d+ 0\n", done.stdout), done.stdout
