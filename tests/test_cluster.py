"""The clustering notebook executes headless end to end (papermill), explorer widget included, and its real-data cell
skips cleanly when no features are given."""
import json, os
from pathlib import Path
import pytest

NB = Path(__file__).resolve().parents[1]/'nbs'/'05_cluster.ipynb'

def test_cluster_notebook_runs_headless(tmp_path, monkeypatch):
    pm = pytest.importorskip('papermill')
    monkeypatch.delenv('SLSR_CLUSTER_FEATURES', raising=False)
    out = tmp_path/'05_cluster.out.ipynb'
    pm.execute_notebook(str(NB), str(out), cwd=str(NB.parent), kernel_name='python3', progress_bar=False,
                        parameters={'features': None}, execution_timeout=600)
    nb = json.loads(out.read_text())
    text = ''.join(''.join(o.get('text', '')) for c in nb['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', []))
    assert 'No real training features given' in text
    assert any(o.get('output_type') == 'error' for c in nb['cells'] for o in c.get('outputs', [])) is False
