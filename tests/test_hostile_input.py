"""Bad input on purpose (issue 17): every case that was found by trying, each one test named after it.

One tiny finished papermill run of the pipeline is shared by the module (run folders are cloned with hard links
where a test changes one, and files are only ever replaced, never edited in place, so the shared run stays intact).
About three minutes on 2 cores, most of it the shared run.
"""
import base64, contextlib, csv, io, json, os, shutil, subprocess, sys, time, warnings
from pathlib import Path
import numpy as np
import pytest
import yaml

from slsr_nb.cli import main

SLSR = shutil.which('slsr', path=str(Path(sys.executable).parent)) or shutil.which('slsr')
TINY_DATA = dict(n_ids=8, n_test_ids=6, n_cams=3, n_distractors=10, n_junk=5, height=64, width=32)
TINY = dict(dataset='synthetic', protocol=TINY_DATA, backbone='resnet18', weights=None, epochs=1, gan_epochs=1,
            finetune_epochs=1, n_generated=20, height=32, width=16, gan_size=32, batch_size=8, gan_batch_size=16,
            k_min=2, k_max=3, smoothing=['slsr'], rerank=False, seed=0, amp=False)


def cli(*args, cwd=None):
    "`slsr ARGS` in this process: (exit code, stdout, stderr)."
    o, e = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd: os.chdir(cwd)
        with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e): code = main(list(map(str, args)))
    finally: os.chdir(old)
    return code, o.getvalue(), e.getvalue()


def snapshot(folder):
    "Every file under `folder` (but the lock, which whoever takes it rewrites) with its size, mtime and a digest of its bytes."
    import hashlib
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(Path(folder).rglob('*')) if p.is_file() and p.name != '.lock'}


def replace_file(path, data):
    "Write `data` as a new file at `path` (unlinking first, so a hard-linked clone never changes the original)."
    path = Path(path); path.unlink(missing_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def clone(run, dst, *own):
    "A copy of a run folder made of hard links (instant, no disk); the lock and the sub-folders `own` are real copies."
    shutil.copytree(run, dst, copy_function=os.link, ignore=shutil.ignore_patterns('.lock', '.progress.log'))
    for sub in own:  # a stage that will run again in its own folder writes some files in place
        for d in Path(dst).glob(sub): shutil.rmtree(d); shutil.copytree(Path(run)/d.relative_to(dst), d)
    return Path(dst)


@pytest.fixture(scope='module')
def shared(tmp_path_factory):
    "One tiny finished run through `slsr run` (papermill), with its parameter file and data root."
    d = tmp_path_factory.mktemp('hostile')
    (d/'data').mkdir()
    params = d/'tiny.yaml'; params.write_text(yaml.safe_dump(TINY))
    r = subprocess.run([SLSR, 'run', 'slsr_pipeline', '-f', params, '--data-root', d/'data', '--run-dir', d/'runs'/'tiny'],
                       capture_output=True, text=True, cwd=d, timeout=900, env={**os.environ, 'MPLBACKEND': 'Agg'})
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(dir=d, data=d/'data', params=params, run=d/'runs'/'tiny')


def tiny_args(s, run_dir, *extra):
    return ('run', 'slsr_pipeline', '-f', s['params'], '--data-root', s['data'], '--run-dir', run_dir, *extra)


# 1. code execution through a parameter ------------------------------------------------------------------------
PAYLOAD = '"+__import__("os").system("id > {f}")+"'


@pytest.mark.parametrize('how', ['override', 'params_file'])
def test_binary_payload_in_a_mapping_parameter_runs_nothing(how, tmp_path):
    "A `!!binary` value inside `protocol`, from `-p` or a parameter file: refused before papermill, nothing runs."
    pwned = tmp_path/'pwned'
    b64 = base64.b64encode(PAYLOAD.format(f=pwned).encode()).decode()
    if how == 'override': extra = ('-p', 'protocol', f'{{x: !!binary {b64}}}')
    else:
        f = tmp_path/'evil.yaml'; f.write_text(f'dataset: synthetic\nprotocol:\n  x: !!binary {b64}\n'); extra = ('-f', f)
    code, out, err = cli('run', 'slsr_pipeline', *extra, '--run-dir', tmp_path/'r', cwd=tmp_path)
    assert code == 2 and 'protocol.x: a YAML !!binary value (bytes) is not allowed' in err, err
    assert not pwned.exists() and not (tmp_path/'r').exists()


@pytest.mark.parametrize('value, tag', [('{when: 2024-01-01}', '!!timestamp'), ('{when: !!timestamp 2024-01-01 10:00:00}', '!!timestamp'),
                                        ('{s: !!set {a: null}}', '!!set'), ('[1, {deep: !!binary aGk=}]', '!!binary')])
def test_timestamp_set_and_nested_binary_tags_are_refused(value, tag, tmp_path):
    code, out, err = cli('run', 'slsr_pipeline', '-p', 'protocol', value, '--run-dir', tmp_path/'r', cwd=tmp_path)
    assert code == 2 and f'a YAML {tag} value' in err, err
    assert not (tmp_path/'r').exists()


def test_binary_payload_for_any_notebook_parameter_runs_nothing(tmp_path):
    "Notebooks other than the pipeline get the same check (papermill escapes only strings)."
    import nbformat
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('x = 1'); p.metadata['tags'] = ['parameters']
    nb.cells = [p, nbformat.v4.new_code_cell('print(x)')]
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    nbformat.write(nb, tmp_path/'nb.ipynb')
    pwned = tmp_path/'pwned'
    b64 = base64.b64encode(PAYLOAD.format(f=pwned).encode()).decode()
    code, out, err = cli('run', tmp_path/'nb.ipynb', '-p', 'x', f'!!binary {b64}', '--run-dir', tmp_path/'r', cwd=tmp_path)
    assert code == 2 and 'x: a YAML !!binary value' in err, err
    assert not pwned.exists() and not (tmp_path/'r').exists()


# 2. a refused or concurrent run destroys the finished run's log -------------------------------------------------
def test_refused_rerun_keeps_the_finished_runs_notebook(shared):
    "Another seed on a finished run (papermill path): exit 4, and not one file of the run folder changed."
    before = snapshot(shared['run'])
    assert 'slsr_pipeline.ipynb' in before
    code, out, err = cli(*tiny_args(shared, shared['run'], '-p', 'seed', '3'), cwd=shared['dir'])
    assert code == 4 and 'seed differ' in err, err
    assert snapshot(shared['run']) == before


def test_concurrent_run_keeps_the_running_folders_files(shared, tmp_path):
    "A second `slsr run` on a folder another process is running: exit 4 before papermill writes anything."
    run = clone(shared['run'], tmp_path/'busy')
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; from slsr_nb.runs import RunFolder\n'
                               'with RunFolder(sys.argv[1]):\n    print("locked", flush=True); time.sleep(60)\n', run],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        before = snapshot(run)
        code, out, err = cli(*tiny_args(shared, run), cwd=shared['dir'])
        assert code == 4 and 'being run by another process' in err, err
        assert snapshot(run) == before
    finally: holder.kill(); holder.wait()


def test_corrupt_done_json_reruns_that_stage_and_keeps_the_run(shared, tmp_path):
    "A done.json that is not JSON: the stage runs again (exit 0), the results are the same."
    run = clone(shared['run'], tmp_path/'corrupt', 'stages/evaluate-baseline-*')
    marker = next(run.glob('stages/evaluate-baseline-*/done.json'))
    replace_file(marker, b'\x00{"stage": "evaluate-base')
    code, out, err = cli(*tiny_args(shared, run, '--in-process'), cwd=shared['dir'])
    assert code == 0, err
    assert 'is corrupt' in err and '[evaluate-baseline] done: ran in' in err, err
    m_old, m_new = (json.loads((r/'metrics.json').read_text()) for r in (shared['run'], run))
    assert m_new['results'] == m_old['results']
    assert (run/'slsr_pipeline.ipynb').read_bytes() == (shared['run']/'slsr_pipeline.ipynb').read_bytes()


# 3. any existing folder can be a run folder ----------------------------------------------------------------------
@pytest.mark.parametrize('in_process', [False, True])
def test_run_dir_that_is_not_a_run_folder_is_refused(in_process, shared, tmp_path):
    mine = tmp_path/'my_folder'; mine.mkdir()
    (mine/'params.yaml').write_text('my own: file\n'); (mine/'notes.txt').write_text('keep me')
    before = snapshot(mine)
    code, out, err = cli(*tiny_args(shared, mine, *(['--in-process'] if in_process else [])), cwd=shared['dir'])
    assert code == 2 and 'is not a run folder of this kit' in err, err
    assert snapshot(mine) == before


# 4. generated-image paths are not confined -----------------------------------------------------------------------
def _load_data(shared):
    from slsr_nb.data.datasets import load_dataset
    return load_dataset('synthetic', shared['data'], verbose=False, **TINY_DATA)


@pytest.mark.parametrize('where', ['absolute_gallery', 'relative_query'])
def test_manifest_rows_pointing_at_test_images_are_refused(where, shared, tmp_path):
    "Rows of the generated-image manifest edited to point at query/gallery images: refused before any fine-tuning."
    run = clone(shared['run'], tmp_path/'m')
    man = next(run.glob('stages/generate-*/manifest.csv'))
    d = _load_data(shared)
    rows = list(csv.DictReader(man.open()))
    for i, r in enumerate(rows):
        real = Path(d.gallery[i % len(d.gallery)][0] if where == 'absolute_gallery' else d.query[i % len(d.query)][0])
        r['file'] = str(real) if where == 'absolute_gallery' else os.path.relpath(real, man.parent)
    buf = io.StringIO(); w = csv.DictWriter(buf, ['file', 'cluster', 'seed']); w.writeheader(); w.writerows(rows)
    replace_file(man, buf.getvalue())
    code, out, err = cli(*tiny_args(shared, run, '-p', 'finetune_epochs', '2', '--overwrite', '--in-process'), cwd=shared['dir'])
    assert code == 1 and 'an image of a split of the data set' in err, err
    assert not list(run.glob('stages/finetune-slsr-*/model.pt'))[1:], 'no second fine-tuned model'


def test_stage_record_path_outside_the_run_folder_is_refused(shared, tmp_path):
    "A done.json edited to name a manifest outside the run folder: refused."
    run = clone(shared['run'], tmp_path/'o')
    outside = tmp_path/'elsewhere'; shutil.copytree(next(run.glob('stages/generate-*')), outside)
    marker = next(run.glob('stages/generate-*/done.json'))
    rec = json.loads(marker.read_text()); rec['result']['manifest'] = str(outside/'manifest.csv')
    replace_file(marker, json.dumps(rec))
    code, out, err = cli(*tiny_args(shared, run, '-p', 'finetune_epochs', '2', '--overwrite', '--in-process'), cwd=shared['dir'])
    assert code == 1 and 'outside the run folder' in err, err


# 5. --overwrite of a finished run with -p stages data -------------------------------------------------------------
def test_overwrite_with_stages_data_keeps_params_metrics_and_list_in_agreement(shared, tmp_path):
    root = tmp_path/'runs'; run = clone(shared['run'], root/'o')
    code, out, err = cli(*tiny_args(shared, run, '-p', 'seed', '3', '-p', 'stages', 'data', '--overwrite', '--in-process'), cwd=shared['dir'])
    assert code == 0, err
    assert yaml.safe_load((run/'params.yaml').read_text())['seed'] == 3
    assert not (run/'metrics.json').exists(), 'the old metrics must not outlive the run they belong to'
    code, out, _ = cli('list', root)
    assert code == 0 and '[unfinished]' in out, out
    code, out, err = cli(*tiny_args(shared, run, '--in-process'), cwd=shared['dir'])   # the original parameters again
    assert code == 0, err
    m = json.loads((run/'metrics.json').read_text())
    assert m['results'] == json.loads((shared['run']/'metrics.json').read_text())['results']
    code, out, _ = cli('list', root)
    assert '[finished]' in out and yaml.safe_load((run/'params.yaml').read_text())['seed'] == 0, out


# 6. stale results after the data changed --------------------------------------------------------------------------
def test_changed_data_reruns_the_stages_that_read_it(shared, tmp_path):
    "One training image replaced (new size and time): the same command runs the data stage again, under a new key."
    run = clone(shared['run'], tmp_path/'c')
    img = Path(_load_data(shared).train[0][0])
    data, st = img.read_bytes(), img.stat()
    try:
        replace_file(img, data + b'\0')
        code, out, err = cli(*tiny_args(shared, run, '-p', 'stages', 'data', '--in-process'), cwd=shared['dir'])
        assert code == 0, err
        assert '[data] running in' in err and json.loads((run/'timings.json').read_text())['reused'] == [], err
        assert len(list(run.glob('stages/data-*'))) == 2
    finally:
        replace_file(img, data); os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))
    code, out, err = cli(*tiny_args(shared, run, '-p', 'stages', 'data', '--in-process'), cwd=shared['dir'])
    assert code == 0 and json.loads((run/'timings.json').read_text())['reused'] == ['data'], err  # the same data again


# 7. the folder data set changes labels silently ---------------------------------------------------------------------
def _folder_set(root, n_ids=8):
    from slsr_nb.data.datasets import _write_img
    for i in range(n_ids): _write_img(root/'train'/f'{i:04d}_c1_a.jpg', i); _write_img(root/'train'/f'{i:04d}_c2_b.jpg', i + 50)
    _write_img(root/'query'/'0100_c1_x.jpg', 1); _write_img(root/'gallery'/'0100_c2_y.jpg', 2)
    return root


def test_folder_symlink_back_into_the_tree_is_refused(tmp_path):
    from slsr_nb.data.datasets import load_dataset
    root = _folder_set(tmp_path/'mine')
    assert load_dataset('folder', root, verbose=False).n_train_pids == 8
    (root/'train'/'0007').symlink_to('.')
    with pytest.raises(ValueError, match='0007 is a symlink to .* inside the data folder'):
        load_dataset('folder', root, verbose=False)


def test_folder_single_numeric_subfolder_is_refused(tmp_path):
    from slsr_nb.data.datasets import load_dataset, _write_img
    root = _folder_set(tmp_path/'mine')
    _write_img(root/'train'/'0099'/'c1_z.jpg', 3)
    with pytest.raises(ValueError, match=r"holds both images \(16.*identity sub-folders \(1"):
        load_dataset('folder', root, verbose=False)


def test_folder_identity_folders_naming_one_identity_are_refused(tmp_path):
    from slsr_nb.data.datasets import load_dataset, _write_img
    root = tmp_path/'mine'
    _write_img(root/'train'/'7'/'c1_a.jpg', 1); _write_img(root/'train'/'0007'/'c2_b.jpg', 2)
    _write_img(root/'query'/'0100_c1_x.jpg', 1); _write_img(root/'gallery'/'0100_c2_y.jpg', 2)
    with pytest.raises(ValueError, match='both name identity 7'):
        load_dataset('folder', root, verbose=False)


# 8. late or unclear errors ----------------------------------------------------------------------------------------
def test_k_larger_than_the_training_set_is_refused_before_any_training(shared, tmp_path):
    code, out, err = cli(*tiny_args(shared, tmp_path/'k', '-p', 'k', '900', '--in-process'), cwd=shared['dir'])
    assert code == 2 and 'k: 900 clusters is too many for the training set' in err, err
    assert not list((tmp_path/'k').glob('stages/baseline-*')), 'no training started'


def test_params_file_that_is_not_utf8_names_the_file(tmp_path):
    f = tmp_path/'latin1.yaml'; f.write_bytes('dataset: synthetic\nnote: caf\xe9\n'.encode('latin-1'))
    code, out, err = cli('run', 'slsr_pipeline', '-f', f, '--run-dir', tmp_path/'r', cwd=tmp_path)
    assert code == 2 and f'{f} is not UTF-8 text' in err and 'Traceback' not in err, err


def test_list_survives_a_corrupt_done_json_and_a_bad_run_folder(shared, tmp_path):
    root = tmp_path/'runs'
    good = clone(shared['run'], root/'good')
    replace_file(next(good.glob('stages/report-*/done.json')), b'{"stage": ')
    bad = root/'bad'; bad.mkdir(); (bad/'params.yaml').write_bytes(b'\xff\xfe\x00garbage: [')
    (root/'half').mkdir(); (root/'half'/'params.yaml').write_text('dataset: x\n'); (root/'half'/'metrics.json').write_text('{')
    code, out, err = cli('list', root)
    assert code == 0, err
    lines = out.splitlines()
    assert any(str(good) in l and '[finished]' in l for l in lines), out
    assert any(str(bad) in l and '[unreadable]' in l for l in lines) and any(str(root/'half') in l and '[unreadable]' in l for l in lines), out
    assert '! corrupt stages/report-' in out and 'JSONDecodeError' in out, out
    code, out, err = cli('list', root, '--json')
    assert code == 0 and len(json.loads(out)) == 3


def test_features_times_1e200_give_one_clear_error():
    from slsr_nb.cluster import cluster_features
    rng = np.random.default_rng(0)
    f = {'feats': rng.normal(size=(40, 8)) * 1e200, 'pids': np.repeat(np.arange(8), 5), 'camids': np.zeros(40, int),
         'paths': [f'{i}.jpg' for i in range(40)]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with pytest.raises(ValueError, match='values up to [0-9.]+e\\+200: squared distances between such vectors overflow'):
            cluster_features(f, ks=[2, 3], seed=0)
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


# 9. a clusters file edited to leave a cluster empty ----------------------------------------------------------------
def test_clusters_file_edited_to_leave_a_cluster_empty_is_refused(shared, tmp_path):
    run = clone(shared['run'], tmp_path/'e')
    f = next(run.glob('stages/clusters-*/assignments.csv'))
    rows = list(csv.DictReader(f.open()))
    for r in rows: r['cluster'] = '0'
    buf = io.StringIO(); w = csv.DictWriter(buf, list(rows[0])); w.writeheader(); w.writerows(rows)
    replace_file(f, buf.getvalue())
    metrics = (run/'metrics.json').read_bytes()
    code, out, err = cli(*tiny_args(shared, run, '--in-process'), cwd=shared['dir'])
    assert code == 1 and 'assignments.csv cannot be used' in err and 'hold no image' in err and 'changed after' in err, err
    assert (run/'metrics.json').read_bytes() == metrics, 'metrics.json is not rewritten from an edited clustering'
