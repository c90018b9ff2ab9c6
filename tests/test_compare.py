"""The comparison notebook (nbs/experiments/compare.ipynb) runs headless end to end under papermill on a tiny
synthetic set: it makes its own baseline, clusters, GANs and generated images, trains every method, and writes the
results table, the CMC plot and the k x N ablation."""
import json
from pathlib import Path
import pytest

NB = Path(__file__).resolve().parents[1]/'nbs'/'experiments'/'compare.ipynb'

def test_compare_notebook_runs_headless(tmp_path):
    pm = pytest.importorskip('papermill')
    out_nb, run = tmp_path/'compare.out.ipynb', tmp_path/'run'
    params = dict(data_root=str(tmp_path/'data'), out_dir=str(run),
                  protocol=dict(n_ids=6, n_test_ids=4, n_cams=2, cams_per_id=2, imgs_per_id_cam=2, n_distractors=2,
                                n_junk=2, height=32, width=16),
                  arch='resnet18', weights=None, height=32, width=16, batch_size=8, epochs=1, baseline_epochs=1,
                  gan_epochs=1, k=2, n_generated=12, seeds=[0], ablation_ks=[2, 3], ablation_ns=[6, 12],
                  extra_train_kw={'max_steps': 1},
                  device='cpu')
    pm.execute_notebook(str(NB), str(out_nb), cwd=str(tmp_path), kernel_name='python3', progress_bar=False,
                        parameters=params, execution_timeout=900)
    res = json.loads((run/'comparison'/'results.json').read_text())
    assert [r['method'] for r in res['rows']] == ['baseline', 'lsr', 'lsro', 'slsr', 'slsr+noise']
    assert all(r['n_seeds'] == 1 for r in res['rows'])
    assert res['meta']['n_generated'] == 12 and res['meta']['n_clusters'] == 2
    assert (run/'comparison'/'cmc.png').stat().st_size > 1000
    abl = json.loads((run/'ablation'/'ablation.json').read_text())
    assert sorted((c['k'], c['n_generated']) for c in abl['cells']) == [(2, 6), (2, 12), (3, 6), (3, 12)]
    nb = json.loads(out_nb.read_text())
    assert not any(o.get('output_type') == 'error' for c in nb['cells'] for o in c.get('outputs', []))
