"""Loading the default spaCy backend does not import torch (thinc would, for nothing), and torch still works after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys
from tir.knowledge.graphs import get_backend
backend = get_backend("spacy")
graph = backend.parse_batch(["a man in a red shirt carrying a bag"])[0]
print("torch imported:", "torch" in sys.modules)
import torch
print("objects:", sorted(o.head for o in graph.objects), "torch works:", float(torch.ones(3).sum()) == 3.0)
"""


def test_default_backend_loads_without_torch_and_torch_stays_importable() -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert "torch imported: False" in result.stdout
    assert "objects: ['bag', 'man', 'shirt'] torch works: True" in result.stdout
