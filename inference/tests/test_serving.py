"""The web process serves predictions without importing scikit-learn; a model brings it in when loaded."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "cryptopred.settings"
from core.config import prepare_environment
prepare_environment()
import django
django.setup()
import cryptopred.asgi  # the web process: URLs, admin, API, websocket consumers
from django.urls import get_resolver
get_resolver().url_patterns
from inference import predictions, serving  # serving code, no model loaded yet
print(sorted(m for m in ("sklearn", "skops", "modeling.training") if m in sys.modules))
"""


def test_web_process_imports_no_training_code():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
