import os
import subprocess
import sys
from pathlib import Path

import gendex as gdx

SRC = Path(__file__).resolve().parents[1] / "src"


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_import_gendex_does_not_import_torch():
    res = _run("import gendex, sys; assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_namespaces_and_version():
    for name in ("pp", "tl", "pl", "get", "io", "datasets"):
        assert name in gdx.__all__
        assert hasattr(gdx, name)
    assert isinstance(gdx.__version__, str) and gdx.__version__
