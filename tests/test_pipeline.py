"""The pipeline end to end on a tiny synthetic set: stage caching, partial re-runs, and resume after SIGKILL.

The whole file takes about two minutes on 2 CPU cores (one tiny full run, one baseline-only run killed and resumed,
and the same baseline run uninterrupted to compare against).
"""
import json, os, shutil, signal, subprocess, sys, textwrap, time
from pathlib import Path
import pytest
import torch

import yaml
from slsr_nb.params import validate_params, ParamError
from slsr_nb.runs import RunLocked
from slsr_nb.pipeline import run_pipeline
from slsr_nb.viz import results_table

ROOT = Path(__file__).resolve().parents[1]
TINY_DATA = dict(n_ids=8, n_test_ids=6, n_cams=3, n_distractors=10, n_junk=5, height=64, width=32)


def tiny_params(data_root, run_dir, **kw):
    "Every stage, the smallest sizes that still exercise it."
    p = dict(dataset='synthetic', data_root=str(data_root), protocol=TINY_DATA, run_dir=str(run_dir),
             backbone='resnet18', weights=None, height=64, width=32, batch_size=16, epochs=1, k_min=2, k_max=3,
             gan_size=32, gan_epochs=1, gan_batch_size=16, n_generated=32, smoothing=['slsr'],
             finetune_epochs=1, rerank=False, seed=0, amp=False)  # fixed precision: runs compared across processes
    p.update(kw)
    return p


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp('data')


@pytest.fixture(scope='module')
def tiny_run(data_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp('runs')/'tiny'
    t = time.time()
    r = run_pipeline(tiny_params(data_root, run_dir), log=lambda *a: None)
    r['seconds'] = time.time() - t
    return r


def test_tiny_run_writes_the_run_folder(tiny_run):
    rd = Path(tiny_run['run_dir'])
    m = json.loads((rd/'metrics.json').read_text())
    assert set(m['results']) == {'baseline', 'slsr'}
    for res in m['results'].values():
        assert 0 <= res['rank1'] <= res['rank5'] <= res['rank10'] <= 100 and 0 <= res['mAP'] <= 100
    assert m['protocol']['protocol'] == 'market-single-query'
    assert (rd/'params.yaml').is_file() and (rd/'timings.json').is_file()
    assert (rd/m['cmc_png']).read_bytes()[:4] == b'\x89PNG'
    stages = {d.name.rsplit('-', 1)[0]: d for d in (rd/'stages').iterdir()}
    assert all((d/'done.json').is_file() for d in stages.values())
    assert (stages['clusters']/'assignments.csv').is_file() and (stages['clusters']/'umap_clusters.png').is_file()
    assert list((stages['gans']).glob('*/last.pt')), 'GAN checkpoints'
    assert (stages['generate']/'manifest.csv').is_file()
    assert len(list((stages['generate']).rglob('*.png'))) >= 32
    assert (stages['finetune-slsr']/'model.pt').is_file()
    q = m['gan_quality']  # per-cluster GAN quality of the generated set, in the baseline's feature space
    assert q['clusters'] == list(range(m['clusters']['k'])) and 0 <= q['min_consistency'] <= 1 and 0 <= q['mean_recall'] <= 1
    assert all(isinstance(v, float) for v in q['kid_own']) and (stages['generate']/'quality.json').is_file()
    assert m['cross_domain'] is None


def test_second_run_reuses_every_stage(tiny_run, data_root):
    t = time.time()
    r = run_pipeline(tiny_params(data_root, tiny_run['run_dir']), log=lambda *a: None)
    assert time.time() - t < 10
    assert r['reused'] == [s for s in r['results']]          # every stage reused
    assert r['metrics']['results'] == tiny_run['metrics']['results']


def test_changed_parameter_reruns_only_downstream(tiny_run, data_root):
    "The distance feeds the evaluation stages only: every trained model, cluster and image is reused."
    r = run_pipeline(tiny_params(data_root, tiny_run['run_dir'], metric='cosine', overwrite=True), log=lambda *a: None)
    assert set(r['reused']) == {'data', 'baseline', 'features', 'clusters', 'gans', 'generate', 'finetune-slsr'}
    # the earlier evaluation stays on disk (nothing finished is overwritten): two evaluate-slsr folders now
    assert len(list((Path(tiny_run['run_dir'])/'stages').glob('evaluate-slsr-*'))) == 2
    r = run_pipeline(tiny_params(data_root, tiny_run['run_dir'], overwrite=True), log=lambda *a: None)
    assert r['metrics']['results'] == tiny_run['metrics']['results'] and len(r['reused']) == len(r['results'])


def test_lsr_and_slsr_with_noise_run_through_the_pipeline(tiny_run, data_root):
    "Every kind of the loss registry can be asked for; upstream stages (baseline, clusters, GANs, images) are reused."
    r = run_pipeline(tiny_params(data_root, tiny_run['run_dir'], smoothing=['lsr', 'slsr+noise'], overwrite=True), log=lambda *a: None)
    assert set(r['metrics']['results']) == {'baseline', 'lsr', 'slsr+noise'}
    assert {'baseline', 'clusters', 'gans', 'generate'} <= set(r['reused']) and 'finetune-slsr+noise' not in r['reused']
    assert r['results']['finetune-slsr+noise']['method'] == 'slsr+noise' and r['results']['finetune-lsr']['n_generated'] == 0
    run_pipeline(tiny_params(data_root, tiny_run['run_dir'], overwrite=True), log=lambda *a: None)  # back to the fixture's


def test_finetune_step_size_decays_the_finetuning_only(tiny_run, data_root):
    "finetune_step_size: the fine-tuning's learning rate steps down after that many epochs; the baseline is reused."
    r = run_pipeline(tiny_params(data_root, tiny_run['run_dir'], smoothing=['onehot'], finetune_epochs=2,
                                 finetune_step_size=1, overwrite=True), log=lambda *a: None)
    assert 'baseline' in r['reused'] and 'finetune-onehot' not in r['reused']
    (ft,) = (Path(tiny_run['run_dir'])/'stages').glob('finetune-onehot-*')
    lrs = [json.loads(l)['lr_head'] for l in (ft/'log.jsonl').read_text().splitlines()]
    assert lrs == pytest.approx([0.05, 0.005])   # the default lr_head, then x0.1 after one epoch
    run_pipeline(tiny_params(data_root, tiny_run['run_dir'], overwrite=True), log=lambda *a: None)  # back to the fixture's


def test_comparison_with_seeds_and_grid_through_slsr_run(tiny_run, data_root, tmp_path):
    """A comparison (2 kinds x 2 seeds) and a 2 x 1 k x N grid with one seed through `slsr run`, into the fixture's run
    folder: the shared stages are reused (the grid's k that the silhouette chose uses the run's clusters and GANs), metrics.json has every seed's numbers and mean ± std; a second invocation reuses every
    stage, and a run cut off after some fine-tunings resumes with only the missing ones."""
    slsr = shutil.which('slsr', path=str(Path(sys.executable).parent)) or shutil.which('slsr')
    pf = tmp_path/'cmp.yaml'
    pf.write_text(yaml.safe_dump(tiny_params(data_root, tiny_run['run_dir'], smoothing=['onehot', 'slsr'], seeds=[0, 1],
                                             ablation={'k': [2, 3], 'n_generated': [16], 'smoothing': ['slsr'], 'seeds': [0]})))
    def run(*extra):
        r = subprocess.run([slsr, 'run', 'slsr_pipeline', '-f', pf, *extra], capture_output=True, text=True, timeout=900,
                           env={**os.environ, 'MPLBACKEND': 'Agg'})
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads((Path(tiny_run['run_dir'])/'timings.json').read_text())
    t = run('-p', 'overwrite', 'true')
    assert {'data', 'baseline', 'evaluate-baseline', 'features', 'clusters', 'gans', 'generate'} <= set(t['reused'])
    ran = set(t['stages']) - set(t['reused'])
    m = json.loads((Path(tiny_run['run_dir'])/'metrics.json').read_text())
    chosen = m['clusters']['k']; other = 5 - chosen            # the silhouette chose 2 or 3: the grid's other k is new
    assert {'finetune-onehot-s0', 'finetune-onehot-s1', 'finetune-slsr-s0', 'finetune-slsr-s1', f'clusters-k{other}',
            f'gans-k{other}', f'generate-k{other}-n16', f'generate-k{chosen}-n16', 'finetune-slsr-k2-n16-s0',
            'finetune-slsr-k3-n16-s0', 'report'} <= ran, ran
    assert not {f'clusters-k{chosen}', f'gans-k{chosen}'} & set(t['stages'])   # the grid's chosen k is the run's own
    assert m['seeds'] == [0, 1]
    assert {'baseline', 'onehot-s0', 'onehot-s1', 'slsr-s0', 'slsr-s1', 'slsr-k2-n16-s0', 'slsr-k3-n16-s0'} == set(m['results'])
    s = m['summary']['slsr']
    vals = [m['results'][f'slsr-s{i}']['rank1'] for i in (0, 1)]
    assert s['n'] == 2 and s['seeds'] == [0, 1] and s['rank1']['values'] == vals
    assert abs(s['rank1']['mean'] - sum(vals) / 2) < 0.006 and s['rank1']['std'] is not None
    assert [(r['k'], r['n_generated'], r['smoothing'], r['n_seeds']) for r in m['ablation']] == [(2, 16, 'slsr', 1), (3, 16, 'slsr', 1)]
    gq = m['gan_quality_grid']   # each grid generation's GAN quality, per cluster (a cluster of too few images: not scored)
    assert gq and set(gq) <= {f'generate-k{chosen}-n16', f'generate-k{other}-n16'}, gq
    assert all(len(q['clusters']) == int(name.split('-k')[1].split('-')[0]) for name, q in gq.items()), gq
    t2 = run('--in-process')                                   # the same command again: every stage reused
    assert t2['reused'] == list(t2['stages'])
    order = list(t2['stages'])                                 # as if the run had been stopped during finetune-slsr-s1:
    lost = order[order.index('finetune-slsr-s1'):]             # that stage and every later one have no done.json
    for name in lost:
        for marker in (Path(tiny_run['run_dir'])/'stages').glob(f'{name}-*/done.json'): marker.unlink()
    t3 = run('--in-process')
    assert [n for n in t3['stages'] if n not in t3['reused']] == lost and len(lost) >= 7, lost
    assert json.loads((Path(tiny_run['run_dir'])/'metrics.json').read_text())['results'] == m['results']
    run_pipeline(tiny_params(data_root, tiny_run['run_dir'], overwrite=True), log=lambda *a: None)  # back to the fixture's


def test_every_registry_backbone_is_accepted_and_built():
    "Backbones are the model registry's: each one validation accepts is one build_model builds (and `tiny` is gone)."
    from slsr_nb.models import ARCHS, build_model
    assert 'mobilenet_v2' in ARCHS
    for arch in ARCHS:
        p = validate_params({'backbone': arch})
        assert build_model(p['backbone'], 5, weights=None).eval()(torch.zeros(2, 3, 64, 32)).shape[0] == 2
    with pytest.raises(ParamError, match="'tiny' is not one of"): validate_params({'backbone': 'tiny'})


def test_finished_run_is_not_overwritten(tiny_run, data_root):
    with pytest.raises(FileExistsError, match='other parameters'):
        run_pipeline(tiny_params(data_root, tiny_run['run_dir'], seed=1), log=lambda *a: None)


def test_bad_parameters_fail_before_any_work(tmp_path):
    with pytest.raises(ParamError, match="unknown data set 'nope'"):
        run_pipeline({'dataset': 'nope', 'run_dir': str(tmp_path/'r')})
    assert not (tmp_path/'r').exists()


_KILL_SCRIPT = textwrap.dedent('''
    import json, sys
    from slsr_nb.pipeline import run_pipeline
    r = run_pipeline(json.loads(sys.argv[1]), log=lambda *a: print(*a, flush=True))
    print('RESULT', json.dumps(r['results']['baseline']), flush=True)
''')


def _run_script(params, **kw):
    return subprocess.Popen([sys.executable, '-c', _KILL_SCRIPT, json.dumps(params)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, 'MPLBACKEND': 'Agg'}, **kw)


def _result(proc):
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out, json.loads(next(l for l in out.splitlines() if l.startswith('RESULT'))[7:])


def test_resume_after_sigkill_matches_uninterrupted_run(data_root, tmp_path):
    "SIGKILL during baseline training (after its first epoch checkpoint); the re-run resumes and ends identically."
    kw = dict(epochs=2, stages='baseline')
    killed = tiny_params(data_root, tmp_path/'killed', **kw)
    proc = _run_script(killed)
    deadline = time.time() + 300
    ckpt = None
    while time.time() < deadline and proc.poll() is None:
        ckpt = next((tmp_path/'killed'/'stages').glob('baseline-*/last.pt'), None) if (tmp_path/'killed'/'stages').exists() else None
        if ckpt is not None: break
        time.sleep(0.2)
    assert ckpt is not None, 'baseline stage never wrote a checkpoint'
    os.kill(proc.pid, signal.SIGKILL); proc.wait()
    bdir = ckpt.parent
    assert not (bdir/'done.json').exists(), 'killed mid-stage: no done marker'
    epochs_before = len((bdir/'log.jsonl').read_text().splitlines()) if (bdir/'log.jsonl').exists() else 0
    assert epochs_before < 2, 'the kill came too late to test resume'
    out, resumed = _result(_run_script(killed))
    assert 'resuming unfinished stage' in out and '[data] finished earlier' in out
    _, fresh = _result(_run_script(tiny_params(data_root, tmp_path/'fresh', **kw)))
    assert resumed == fresh, (resumed, fresh)
    losses = lambda d: {e['epoch']: e['loss'] for e in map(json.loads, (d/'log.jsonl').read_text().splitlines())}
    fresh_dir = next((tmp_path/'fresh'/'stages').glob('baseline-*'))
    assert len(losses(bdir)) == 2 and losses(bdir) == losses(fresh_dir)   # the same epochs, the same losses
    a = torch.load(bdir/'model.pt', weights_only=True)
    b = torch.load(next((tmp_path/'fresh'/'stages').glob('baseline-*/model.pt')), weights_only=True)
    sa, sb = (x.get('model', x.get('state_dict', x)) if isinstance(x, dict) else x for x in (a, b))
    for k in sa:
        if torch.is_tensor(sa[k]): assert torch.equal(sa[k], sb[k]), k


def test_second_process_is_locked_out(tmp_path):
    "Two processes on one run folder: the second is refused while the first holds the lock."
    from slsr_nb.runs import RunFolder
    code = ('import sys,time; from slsr_nb.runs import RunFolder\n'
            'with RunFolder(sys.argv[1]):\n    print("locked", flush=True); time.sleep(30)\n')
    p = subprocess.Popen([sys.executable, '-c', code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == 'locked'
        with pytest.raises(RunLocked, match='being run by another process'):
            with RunFolder(tmp_path): pass
    finally:
        p.kill(); p.wait()
    with RunFolder(tmp_path): pass  # free again once the holder is gone


def test_cross_domain_evaluation_through_the_pipeline(tiny_run, data_root, tmp_path):
    "eval_on: every model of a run also scored on another synthetic set (other people and cameras), beside the home result."
    other = dict(TINY_DATA, seed=1)
    p = tiny_params(data_root, tiny_run['run_dir'], eval_on=[{'dataset': 'synthetic', 'name': 'synthetic-seed1',
                                                             'data_root': str(tmp_path), 'protocol': other}], overwrite=True)
    r = run_pipeline(p, log=lambda *a: None)
    assert 'cross-domain' not in r['reused'] and {'baseline', 'finetune-slsr', 'generate'} <= set(r['reused'])
    cd = r['metrics']['cross_domain']['synthetic-seed1']
    assert set(cd['results']) == {'baseline', 'slsr'} and cd['dataset'] == 'synthetic'
    home = r['metrics']['results']
    assert all(0 <= v['mAP'] <= 100 for v in cd['results'].values())
    assert cd['results']['baseline'] != home['baseline']  # another data set, other numbers
    assert 'cross-domain: trained on synthetic, tested on synthetic-seed1' in results_table(r['metrics'])
    with pytest.raises(ParamError, match="eval_on: unknown data set 'mnist'"):
        validate_params(tiny_params(data_root, tmp_path/'x', eval_on=['mnist']))
