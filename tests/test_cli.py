"""The `slsr` console script: help, errors and their exit codes, papermill runs of the experiment notebooks
(tiny parameters, synthetic data), `list` and `compare`, and cache reuse across a papermill run and a re-run.

About two minutes on 2 cores, most of it the tiny papermill run of the full pipeline.
"""
import json, os, shutil, subprocess, sys, textwrap, time
from pathlib import Path
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SLSR = shutil.which('slsr', path=str(Path(sys.executable).parent)) or shutil.which('slsr')
TINY_DATA = dict(n_ids=8, n_test_ids=6, n_cams=3, n_distractors=10, n_junk=5, height=64, width=32)
TINY = dict(dataset='synthetic', protocol=TINY_DATA, backbone='resnet18', weights=None, height=64, width=32,
            batch_size=16, epochs=1, k_min=2, k_max=3, gan_size=32, gan_epochs=1, gan_batch_size=16, n_generated=32,
            smoothing=['slsr'], finetune_epochs=1, rerank=False, seed=0, amp=False)  # fixed precision: runs compared across processes


def slsr(*args, cwd=None, timeout=900):
    "Run the installed console script; (exit code, stdout, stderr)."
    assert SLSR, 'the slsr console script is not installed (pip install -e .)'
    r = subprocess.run([SLSR, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                       env={**os.environ, 'MPLBACKEND': 'Agg'})
    return r.returncode, r.stdout, r.stderr


def test_help_lists_the_commands():
    code, out, _ = slsr('--help')
    assert code == 0
    for cmd in ('demo', 'run', 'list', 'compare', 'exit codes'): assert cmd in out
    code, out, _ = slsr('run', '--help')
    assert code == 0 and '--params-file' in out and '--run-dir' in out


@pytest.mark.parametrize('args, code, msg', [
    ((), 2, 'required'),
    (('frobnicate',), 2, 'invalid choice'),
    (('run', 'slsr_pipeline', '-p', 'dataset', 'mnist'), 2, "unknown data set 'mnist'"),
    (('run', 'slsr_pipeline', '--data-root', '/no/such/root'), 2, "'/no/such/root' is not an existing folder"),
    (('run', 'slsr_pipeline', '-p', 'epochs', '-3'), 2, 'epochs: -3 is below the minimum'),
    (('run', 'slsr_pipeline', '-p', 'epochz', '3'), 2, 'has no parameter(s) epochz'),
    (('run', 'no_such_notebook'), 2, "no experiment notebook 'no_such_notebook'"),
    (('run', 'slsr_pipeline', '-f', 'no_such_params'), 2, "no parameter file 'no_such_params'"),
    (('list', '/no/such/runs'), 3, 'No runs folder'),
    (('compare', '/no/such/run'), 3, 'has no metrics.json'),
])
def test_errors_and_exit_codes(args, code, msg, tmp_path, capsys, monkeypatch):
    "In-process `main` (fast); test_console_script_exit_code checks the installed script passes codes through."
    from slsr_nb.cli import main
    monkeypatch.chdir(tmp_path)
    c = main(list(map(str, args)))
    out, err = capsys.readouterr()
    assert c == code, (c, out, err)
    assert msg in err, err
    assert 'Traceback' not in err
    assert not (tmp_path/'runs').exists(), 'a refused command must not create a run folder'


def test_pipeline_notebook_defaults_are_the_kits():
    "The pipeline notebook's parameters cell declares every run parameter, with the same defaults as `PARAMS`."
    import ast, papermill
    from slsr_nb.params import default_params
    declared = papermill.inspect_notebook(str(ROOT/'nbs'/'experiments'/'slsr_pipeline.ipynb'))
    assert set(declared) == set(default_params())
    for name, d in declared.items():
        assert ast.literal_eval(d['default']) == default_params()[name], name


def test_console_script_exit_code(tmp_path):
    c, out, err = slsr('run', 'slsr_pipeline', '-p', 'dataset', 'mnist', cwd=tmp_path)
    assert c == 2 and "unknown data set 'mnist'" in err and 'Traceback' not in err, err


def _notebook(tmp_path, body, name='nb.ipynb'):
    "A tiny experiment notebook with a parameters cell."
    import nbformat
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('x = 1\nout_dir = None'); p.metadata['tags'] = ['parameters']
    nb.cells = [p, nbformat.v4.new_code_cell(textwrap.dedent(body))]
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    nbformat.write(nb, tmp_path/name)
    return tmp_path/name


def test_run_executes_a_notebook_into_the_run_folder(tmp_path):
    nb = _notebook(tmp_path, "from pathlib import Path\nPath(out_dir, 'x.txt').write_text(str(x * 2))")
    c, out, err = slsr('run', nb, '-p', 'x', '21', '--run-dir', tmp_path/'r1', cwd=tmp_path)
    assert c == 0, err
    assert (tmp_path/'r1'/'x.txt').read_text() == '42'          # out_dir defaults to the run folder
    assert (tmp_path/'r1'/'nb.ipynb').is_file()                  # the executed notebook is the run's log
    assert 'IPKernelApp' not in err and 'without encryption' not in err, err   # the kernel's own log: errors only


def test_failing_notebook_exit_codes_keep_the_partial_log(tmp_path):
    nb = _notebook(tmp_path, "raise RuntimeError('boom')")
    c, out, err = slsr('run', nb, '--run-dir', tmp_path/'r', cwd=tmp_path)
    assert c == 1 and 'RuntimeError: boom' in err, err
    executed = json.loads((tmp_path/'r'/'nb.ipynb').read_text())
    assert any('boom' in json.dumps(c.get('outputs', [])) for c in executed['cells'])
    nb = _notebook(tmp_path, "open('/no/such/file/anywhere')", name='nb2.ipynb')
    c, _, err = slsr('run', nb, '--run-dir', tmp_path/'r2', cwd=tmp_path)
    assert c == 3 and 'FileNotFoundError' in err, err


@pytest.fixture(scope='module')
def papermill_run(tmp_path_factory):
    "The full pipeline notebook through `slsr run` with tiny parameters (a YAML file plus -p overrides)."
    d = tmp_path_factory.mktemp('cli')
    params = d/'tiny.yaml'
    params.write_text(yaml.safe_dump(TINY))
    t = time.time()
    c, out, err = slsr('run', 'slsr_pipeline', '-f', params, '--data-root', '.', '-p', 'epochs', '1',
                       '--run-dir', d/'runs'/'tiny', cwd=d)   # a data root relative to the caller's folder, not the run's
    return dict(dir=d, run=d/'runs'/'tiny', code=c, out=out, err=err, seconds=time.time() - t, params=params)


def test_papermill_smoke_run_of_the_pipeline_notebook(papermill_run):
    r = papermill_run
    assert r['code'] == 0, r['err'][-3000:]
    run = r['run']
    nb = json.loads((run/'slsr_pipeline.ipynb').read_text())
    outputs = [o for c in nb['cells'] for o in c.get('outputs', [])]
    assert sum('image/png' in o.get('data', {}) for o in outputs) >= 3, 'the executed notebook shows the figures'
    m = json.loads((run/'metrics.json').read_text())
    assert set(m['results']) == {'baseline', 'slsr'}
    assert f'run folder: {run}' in r['out'] and 'rank1' in r['out'] and 'market-single-query' in r['out']
    assert yaml.safe_load((run/'params.yaml').read_text())['epochs'] == 1


def test_papermill_run_shows_stages_and_progress_on_the_console(papermill_run):
    "Without -v: one line per stage as it starts and as it ends (name, ran/reused, seconds), and the tqdm bars."
    err = papermill_run['err']
    lines = [l for l in err.replace('\r', '\n').splitlines() if l.strip()]
    assert not any('IPKernelApp' in l or 'without encryption' in l for l in lines), lines[:3]   # the kernel logs errors only
    for st in ('data', 'baseline', 'evaluate-baseline', 'features', 'clusters', 'gans', 'generate', 'finetune-slsr', 'report'):
        start = next(i for i, l in enumerate(lines) if l.startswith(f'[{st}] running in stages/{st}-'))
        end = next(i for i, l in enumerate(lines) if l.startswith(f'[{st}] done: ran in ') and l.endswith('s'))
        assert start < end, st
    bars = [l for l in lines if 'epoch 1/1' in l and '|' in l and ('it/s' in l or 's/it' in l)]
    assert bars, err[-2000:]
    assert any(l.startswith('[precision] training: ') for l in lines), err[-2000:]   # what each stage picked, and why
    assert any(l.startswith('epoch=1 loss=') and 'img_per_s=' in l for l in lines), err[-2000:]
    assert not (papermill_run['run']/'.progress.log').exists()
    nb = (papermill_run['run']/'slsr_pipeline.ipynb').read_text()
    assert '[baseline] done: ran in' in nb and 'epoch 1/1' not in nb   # the stage lines in the log, the bars on the console


def test_rerun_reuses_the_cached_stages(papermill_run):
    r = papermill_run
    t = time.time()
    c, out, err = slsr('run', 'slsr_pipeline', '-f', r['params'], '--data-root', r['dir'], '-p', 'epochs', '1',
                       '--run-dir', r['run'], '--in-process', cwd=r['dir'])
    assert c == 0, err
    timings = json.loads((r['run']/'timings.json').read_text())
    assert len(timings['reused']) == len(timings['stages']) >= 8, timings
    assert err.count('done: reused (0.0s)') == len(timings['stages']), err
    assert time.time() - t < 60


def test_slsr_run_metrics_equal_in_process_metrics(papermill_run):
    "The same parameters give the same numbers through papermill (text progress bars) and in this process (tqdm.auto)."
    r = papermill_run
    assert r['code'] == 0, r['err'][-3000:]
    c, out, err = slsr('run', 'slsr_pipeline', '-f', r['params'], '--data-root', r['dir'], '-p', 'epochs', '1',
                       '--run-dir', r['dir']/'runs'/'tiny-in-process', '--in-process', cwd=r['dir'])
    assert c == 0, err[-3000:]
    a = json.loads((r['run']/'metrics.json').read_text())
    b = json.loads((r['dir']/'runs'/'tiny-in-process'/'metrics.json').read_text())
    assert a['results'] == b['results'], (a['results'], b['results'])
    assert a['stage_keys'] == b['stage_keys']


def test_changing_a_finished_run_needs_overwrite(papermill_run):
    r = papermill_run
    c, out, err = slsr('run', 'slsr_pipeline', '-f', r['params'], '--data-root', r['dir'], '-p', 'seed', '3',
                       '--run-dir', r['run'], '--in-process', cwd=r['dir'])
    assert c == 4 and 'seed differ' in err, err


def test_list_and_compare(papermill_run, tmp_path):
    r = papermill_run
    c, out, err = slsr('list', r['dir']/'runs')
    assert c == 0 and str(r['run']) in out and '[finished]' in out and 'baseline: r1' in out, out
    c, out, err = slsr('list', r['dir']/'runs', '--json')
    assert c == 0 and json.loads(out)[0]['status'] == 'finished'
    c, out, err = slsr('compare', r['run'], r['run'], '--save', tmp_path/'cmc.png')
    assert c == 0, err
    assert 'tiny/slsr' in out and (tmp_path/'cmc.png').read_bytes()[:4] == b'\x89PNG'


def test_cluster_explorer_notebook_batch_run(papermill_run):
    "The explorer notebook in batch mode on the pipeline run's features (widgets render headless)."
    r = papermill_run
    c, out, err = slsr('run', 'cluster_explorer', '-p', 'source_run', r['run'], '-p', 'k_max', '3', '-p', 'n_init', '2', '-p', 'widgets', 'false',
                       '--run-dir', r['dir']/'runs'/'explore', cwd=r['dir'])
    assert c == 0, err[-3000:]
    ex = r['dir']/'runs'/'explore'
    assert (ex/'cluster_explorer.ipynb').is_file() and (ex/'silhouette.png').is_file() and (ex/'umap_clusters.png').is_file()


@pytest.mark.parametrize('name', ['market1501', 'dukemtmc', 'cuhk03', 'viper', 'synthetic', 'market1501_cpu', 'dukemtmc_cpu'])
def test_parameter_files_are_valid(name):
    "Every kept parameter set passes the pipeline's checks (types, ranges, known data set)."
    from slsr_nb.params import load_params
    from slsr_nb.pipeline import pipeline_stages
    from slsr_nb.cli import find_params
    p = load_params(find_params(name))
    assert p['dataset'] == name.removesuffix('_cpu')
    if name.endswith('_cpu'):  # the CPU sets: MobileNetV2 with offline ImageNet weights, the full comparison, 2+ seeds
        assert (p['backbone'], p['weights'], p['height'], p['width']) == ('mobilenet_v2', 'imagenet', 128, 64)
        assert set(p['smoothing']) == {'onehot', 'lsr', 'lsro', 'slsr', 'slsr+noise'} and len(p['seeds']) >= 2
        assert sum(s.name.startswith('finetune-') for s in pipeline_stages(p)) == 5 * len(p['seeds'])
    elif name != 'synthetic': assert p['n_generated'] in (8000, 12000, 18000) and p['epochs'] == 130


def test_real_market1501_data_stage(tmp_path):
    "The paper's parameter set on the real Market-1501, data stage only: the Table 3 counts."
    from slsr_nb.core import real_data_root, MARKET_MISSING
    root = real_data_root()
    if root is None or not any((root/n).is_dir() for n in ('Market-1501-v15.09.15', 'market1501')): pytest.skip(MARKET_MISSING)
    c, out, err = slsr('run', 'slsr_pipeline', '-f', 'market1501', '--data-root', root, '-p', 'stages', 'data',
                       '--run-dir', tmp_path/'m', '--in-process', cwd=tmp_path)
    assert c == 0, err
    s = json.loads(next((tmp_path/'m'/'stages').glob('data-*/summary.json')).read_text())
    assert (s['n_train_pids'], s['n_train'], s['n_query'], s['n_gallery']) == (751, 12936, 3368, 19732)
