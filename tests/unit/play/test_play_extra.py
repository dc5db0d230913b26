"""`play` is an extra: the daemon never imports `kubernetes`, and play without it says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)


def test_the_daemon_does_not_import_kubernetes() -> None:
    done = _python(
        "import sys; import cri_py.cli, cri_py.daemon, cri_py.services, cri_py.server.app; "
        "print('kubernetes' in sys.modules)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_play_without_the_extra_names_it() -> None:
    # an interpreter where `import kubernetes` fails, as without the extra
    done = _python(
        "import sys; sys.modules['kubernetes'] = None; from cri_py.cli import main; sys.exit(main(['play', 'x.yaml']))"
    )
    assert done.returncode == 2
    assert "pip install 'cri-py[play]'" in done.stderr
