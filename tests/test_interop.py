"""`slsr eval`, `slsr export-features` and `slsr export-model` as a user runs them.

Result files are written the way layumi's `test.py` (scipy.io.savemat, `pytorch_result.mat`) and torchreid's engine
(its variable names, in an .npz) would write them, and `slsr eval` must give the numbers of independent NumPy
re-implementations of those kits' evaluations (`layumi_eval` below, `ref_eval_market` in eval_reference.py). A tiny
pipeline run (baseline only) is exported, and its exports are checked against the run and against PyTorch.
Most calls go through the console script's entry point in-process (`slsr` below); a few run the installed command
(`slsr_command`), whose every call pays the interpreter and torch start-up. A few minutes on 2 busy cores.
"""
import contextlib, io, json, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import scipy.io
import torch
import onnxruntime  # an optional dependency that CI installs (.ci/setup, onnx_requirements): missing, this file fails

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_reference import ref_eval_market, ref_re_ranking
from slsr_nb.pipeline import run_pipeline
from slsr_nb.models import load_model
from slsr_nb.interop import PARITY_RTOL
from slsr_nb.cli import main

SLSR = shutil.which('slsr', path=str(Path(sys.executable).parent)) or shutil.which('slsr')


def slsr_command(*args, timeout=600):
    "Run the installed console script; (exit code, stdout, stderr)."
    assert SLSR, 'the slsr console script is not installed (pip install -e .)'
    r = subprocess.run([SLSR, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, 'MPLBACKEND': 'Agg'})
    return r.returncode, r.stdout, r.stderr


def slsr(*args):
    """`slsr ARGS` through the console script's entry point in this process, (exit code, stdout, stderr): the same
    parser, dispatch and exit codes as the command, without paying the interpreter start-up for each call."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: code = main([str(a) for a in args])
        except SystemExit as e: code = e.code      # argparse's own errors (exit code 2)
    return code, out.getvalue(), err.getvalue()


def slsr_json(*args):
    code, out, err = slsr(*args, '--json')
    assert code == 0, err
    return json.loads(out)


def market_like(n_ids=750, n_query=3368, n_gallery=19732, dim=512, n_cams=6, seed=0, noise=1.3):
    """Random features with Market-1501-like ids and cameras: every test identity has query images in some cameras
    and gallery images in others (and its own), plus distractors (pid 0) and junk (pid -1) in the gallery."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(n_ids + 1, dim)).astype(np.float32)
    q_pids = np.concatenate([np.arange(1, n_ids + 1), rng.integers(1, n_ids + 1, n_query - n_ids)])
    q_cams = rng.integers(0, n_cams, n_query)
    n_junk, n_distr = n_gallery // 5, n_gallery // 7
    n_real = n_gallery - n_junk - n_distr
    g_pids = np.concatenate([q_pids, rng.integers(1, n_ids + 1, n_real - n_query), np.zeros(n_distr, int), -np.ones(n_junk, int)])
    g_cams = np.concatenate([(q_cams + 1 + rng.integers(0, n_cams - 1, n_query)) % n_cams,  # every query: a match in another camera
                             rng.integers(0, n_cams, n_gallery - n_query)])
    def feats(pids):
        base = np.where((pids > 0)[:, None], centre[np.maximum(pids, 0)], rng.normal(size=(len(pids), dim)))
        return (base + noise * rng.normal(size=(len(pids), dim))).astype(np.float32)
    return dict(qf=feats(q_pids), gf=feats(g_pids), q_pids=q_pids.astype(np.int64), g_pids=g_pids.astype(np.int64),
                q_camids=q_cams.astype(np.int64), g_camids=g_cams.astype(np.int64))


def l2n(f): return f / np.linalg.norm(f, axis=1, keepdims=True)


def write_layumi(path, d):
    "pytorch_result.mat as layumi's test.py writes it: normalised float32 features, Python lists of ids, 1-based cameras."
    scipy.io.savemat(str(path), {'gallery_f': l2n(d['gf']), 'gallery_label': d['g_pids'].tolist(),
                                 'gallery_cam': (d['g_camids'] + 1).tolist(), 'query_f': l2n(d['qf']),
                                 'query_label': d['q_pids'].tolist(), 'query_cam': (d['q_camids'] + 1).tolist()})
    return path


def write_torchreid(path, d):
    "torchreid's variables in an .npz; its Market-1501 reader drops junk (-1) images from the gallery."
    keep = d['g_pids'] != -1
    np.savez(path, qf=d['qf'], q_pids=d['q_pids'], q_camids=d['q_camids'],
             gf=d['gf'][keep], g_pids=d['g_pids'][keep], g_camids=d['g_camids'][keep])
    return path


def layumi_eval(qf, ql, qc, gf, gl, gc):
    """layumi's evaluate_gpu.py protocol in NumPy (re-implemented from its description): rank the gallery by the dot
    product, drop junk (-1) and same-camera matches, official (trapezoid) AP, CMC and mAP divided by all queries.
    The products are summed in float64: layumi's float32 ones order features closer than float32's seven digits by
    the summation order of the GPU's kernel, which no other program reproduces."""
    cmc, ap = np.zeros(len(gl)), 0.0
    qf, gf = qf.astype(np.float64), gf.astype(np.float64)
    for i in range(len(ql)):
        order = np.argsort(-(gf @ qf[i]), kind='stable')
        same_id, same_cam = gl[order] == ql[i], gc[order] == qc[i]
        junk = (gl[order] == -1) | (same_id & same_cam)
        hits = np.flatnonzero((same_id & ~same_cam)[~junk])
        if not len(hits): continue
        cmc[hits[0]:] += 1
        k = np.arange(len(hits))
        prec, before = (k + 1) / (hits + 1), np.where(hits > 0, k / np.maximum(hits, 1), 1.0)
        ap += ((before + prec) / 2).mean()
    return cmc / len(ql), ap / len(ql)


def sq_euclidean(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T


@pytest.fixture(scope='module')
def small():
    return market_like(n_ids=60, n_query=150, n_gallery=900, dim=64, seed=1)


def test_layumi_file_gives_layumis_numbers(tmp_path, small):
    f = write_layumi(tmp_path/'pytorch_result.mat', small)
    m = scipy.io.loadmat(str(f))
    assert m['query_label'].shape == (1, 150) and m['query_f'].shape == (150, 64)   # the layout of layumi's file
    cmc, mAP = layumi_eval(m['query_f'], m['query_label'][0], m['query_cam'][0], m['gallery_f'], m['gallery_label'][0],
                           m['gallery_cam'][0])
    got = slsr_json('eval', f, '--ap', 'official', '--metric', 'cosine')['results']['pytorch_result']
    for k in (1, 5, 10, 20): assert got[f'rank{k}'] == pytest.approx(100 * cmc[k - 1], abs=1e-6)
    assert got['mAP'] == pytest.approx(100 * mAP, abs=1e-6)
    assert 5 < got['rank1'] < 95, 'the test problem should be neither trivial nor hopeless'


def test_torchreid_file_gives_torchreids_numbers(tmp_path, small):
    f = write_torchreid(tmp_path/'features.npz', small)
    z = np.load(f)
    cmc, mAP, mINP = ref_eval_market(sq_euclidean(z['qf'], z['gf']), z['q_pids'], z['g_pids'], z['q_camids'], z['g_camids'])
    got = slsr_json('eval', f)['results']['features']          # default: euclidean, standard AP
    for k in (1, 5, 10, 20): assert got[f'rank{k}'] == pytest.approx(100 * cmc[k - 1], abs=1e-6)
    assert got['mAP'] == pytest.approx(100 * mAP, abs=1e-6) and got['mINP'] == pytest.approx(100 * mINP, abs=1e-6)
    # the same scores from a distance matrix written instead of the features
    np.savez(tmp_path/'dist.npz', distmat=sq_euclidean(z['qf'], z['gf']),
             **{k: z[k] for k in ('q_pids', 'g_pids', 'q_camids', 'g_camids')})
    d = slsr_json('eval', tmp_path/'dist.npz')['results']['dist']
    assert d['mAP'] == pytest.approx(got['mAP'], abs=1e-6) and d['rank1'] == pytest.approx(got['rank1'], abs=1e-6)


def test_rerank_plot_and_splits(tmp_path):
    a, b = (market_like(n_ids=20, n_query=40, n_gallery=160, dim=32, seed=s) for s in (2, 3))
    fa, fb = write_torchreid(tmp_path/'split0.npz', a), write_torchreid(tmp_path/'split1.npz', b)
    png = tmp_path/'cmc.png'
    res = slsr_json('eval', fa, '--rerank', '--k1', '6', '--k2', '3', '--plot', png)
    assert set(res['results']) == {'split0', 'split0+rerank'} and png.read_bytes()[:4] == b'\x89PNG'
    z = np.load(fa)
    e = lambda x, y: np.sqrt(np.maximum(sq_euclidean(x, y), 0)).astype(np.float32)
    rr = ref_re_ranking(e(z['qf'], z['gf']), e(z['qf'], z['qf']), e(z['gf'], z['gf']), 6, 3)
    _, mAP, _ = ref_eval_market(rr, z['q_pids'], z['g_pids'], z['q_camids'], z['g_camids'])
    assert res['results']['split0+rerank']['mAP'] == pytest.approx(100 * mAP, abs=1e-3)
    # two VIPeR-style split files are averaged
    one = [slsr_json('eval', f, '--protocol', 'viper')['results'][f.stem]['mAP'] for f in (fa, fb)]
    both = slsr_json('eval', fa, fb, '--protocol', 'viper')
    assert both['results']['split0']['mAP'] == pytest.approx(np.mean(one), abs=1e-6) and both['protocol']['splits'] == 2
    code, out, _ = slsr_command('eval', fa)               # the installed command itself
    assert code == 0 and 'rank1' in out and 'mAP' in out and 'protocol: market' in out   # the console table


def test_help_shows_an_example_per_input_kind():
    code, out, _ = slsr_command('eval', '--help')
    assert code == 0
    for s in ('pytorch_result.mat', 'qf, q_pids', 'distmat', '--protocol viper', 'cuhk03'): assert s in out, s
    code, out, _ = slsr('--help')
    for s in ('eval', 'export-features', 'export-model'): assert s in out


def test_bad_files_give_clear_errors(tmp_path, small):
    d = {k: v[:20] if k.startswith('q') else v for k, v in small.items()}
    cases = {'no_cam.npz': ({k: v for k, v in d.items() if k != 'g_camids'}, 'lacks gallery_cam/g_camids'),
             'short.npz': ({**d, 'q_pids': d['q_pids'][:-1]}, 'q_pids has 19 entries but there are 20 rows'),
             'nan.npz': ({**d, 'qf': np.where(np.arange(20)[:, None] == 7, np.nan, d['qf'])}, 'qf holds NaN or inf in 1 rows (first: row 7)')}
    for name, (arrays, msg) in cases.items():
        np.savez(tmp_path/name, **arrays)
        code, _, err = slsr('eval', tmp_path/name)
        assert code == 3 and msg in err and name in err, (name, code, err)
    (tmp_path/'x.csv').write_text('1,2')
    code, _, err = slsr('eval', tmp_path/'x.csv')
    assert code == 3 and 'unknown result file type' in err
    code, _, err = slsr('eval', tmp_path/'missing.mat')
    assert code == 3 and 'No result file' in err


# ---------------------------------------------------------------- exports of a tiny run

@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('interop')
    (root/'data').mkdir()
    p = dict(dataset='synthetic', data_root=str(root/'data'), run_dir=str(root/'run'), backbone='resnet18', weights=None,
             protocol=dict(n_ids=6, n_test_ids=5, n_cams=3, n_distractors=4, n_junk=3, height=64, width=32),
             height=64, width=32, batch_size=8, epochs=1, rerank=False, smoothing=['onehot'], stages='evaluate-baseline')
    run_pipeline(p, log=lambda *a: None)
    return Path(p['run_dir'])


def test_export_features_in_both_formats(tiny_run, tmp_path):
    code, out, err = slsr('export-features', tiny_run, '--out', tmp_path, '--train')
    assert code == 0, err
    mat, npz = tmp_path/'baseline'/'pytorch_result.mat', tmp_path/'baseline'/'features.npz'
    assert str(mat) in out and str(npz) in out
    m, z = scipy.io.loadmat(str(mat)), np.load(npz)
    n_q, n_g = len(z['q_pids']), len(z['g_pids'])
    assert m['query_f'].shape == (n_q, 512) and m['query_f'].dtype == np.float32 and m['gallery_label'].shape == (1, n_g)
    assert np.allclose(np.linalg.norm(m['gallery_f'], axis=1), 1, atol=1e-5)          # normalised, as layumi's
    assert (m['query_cam'][0] == z['q_camids'] + 1).all() and (m['gallery_label'][0] == z['g_pids']).all()
    assert 'train_f' in m and 'trainf' in z and len(z['train_pids']) == m['train_label'].shape[1]
    # the .npz with the run's metric gives the run's own evaluation
    done = json.loads(next(tiny_run.glob('stages/evaluate-baseline-*/done.json')).read_text())['result']['plain']
    got = slsr_json('eval', npz)['results']['features']
    for k in ('rank1', 'rank5', 'mAP', 'mINP'): assert got[k] == pytest.approx(done[k], abs=0.006), k
    # the .mat scored the way layumi scores it
    cmc, mAP = layumi_eval(m['query_f'], m['query_label'][0], m['query_cam'][0], m['gallery_f'], m['gallery_label'][0],
                           m['gallery_cam'][0])
    lay = slsr_json('eval', mat, '--ap', 'official', '--metric', 'cosine')['results']['pytorch_result']
    assert lay['rank1'] == pytest.approx(100 * cmc[0], abs=1e-6) and lay['mAP'] == pytest.approx(100 * mAP, abs=1e-6)


def test_export_model_matches_pytorch(tiny_run, tmp_path):
    onnx_f, ts_f = tmp_path/'net.onnx', tmp_path/'net.pt'
    code, out, err = slsr_command('export-model', tiny_run, '--onnx', onnx_f, '--torchscript', ts_f)
    assert code == 0, err
    assert 'max |diff| vs PyTorch' in out and json.loads(Path(f'{onnx_f}.json').read_text())['width'] == 32
    net = load_model(next(tiny_run.glob('stages/baseline-*/model.pt'))).eval()
    x = torch.rand(5, 3, 64, 32)        # another batch size than the one traced: the batch axis is dynamic
    with torch.no_grad(): ref = net.features(x).numpy()
    got = onnxruntime.InferenceSession(str(onnx_f), providers=['CPUExecutionProvider']).run(None, {'images': x.numpy()})[0]
    tol = PARITY_RTOL * max(1.0, float(np.abs(ref).max()))
    assert got.shape == ref.shape and float(np.abs(got - ref).max()) <= tol, (np.abs(got - ref).max(), tol)
    with torch.no_grad(): ts = torch.jit.load(str(ts_f))(x).numpy()
    assert float(np.abs(ts - ref).max()) <= tol


def test_export_errors(tiny_run, tmp_path):
    code, _, err = slsr('export-model', tiny_run)
    assert code == 2 and '--onnx' in err
    code, _, err = slsr('export-model', tiny_run, '--model', 'slsr', '--onnx', tmp_path/'x.onnx')
    assert code == 1 and "has no model 'slsr'" in err and 'baseline' in err
    code, _, err = slsr('export-features', tmp_path)
    assert code == 3 and 'is not a run folder' in err
