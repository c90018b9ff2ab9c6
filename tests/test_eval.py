"""Equality tests of slsr_nb.eval against the direct references in tests/eval_reference.py, on problems larger than
the notebooks' (a few seconds each), plus the real Market-1501 IDs and cameras where the data set is present."""
import re, sys, warnings
from pathlib import Path
import numpy as np
import pytest
sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_reference import ref_eval_market, ref_re_ranking
from slsr_nb.core import real_data_root, MARKET_MISSING
from slsr_nb.eval.metrics import compute_distance_matrix, eval_market, eval_cuhk03
from slsr_nb.eval.rerank import re_ranking

def _problem(nq, ng, n_ids, n_cams, seed, decimals):
    rng = np.random.default_rng(seed)
    ids = dict(q_pids=rng.integers(1, n_ids + 3, nq), g_pids=rng.integers(-1, n_ids, ng),
               q_camids=rng.integers(0, n_cams, nq), g_camids=rng.integers(0, n_cams, ng))
    return np.round(rng.random((nq, ng)), decimals), ids

@pytest.mark.parametrize('seed,nq,ng,n_ids,n_cams,decimals,dtype', [
    (0, 150, 2000, 100, 6, 3, np.float32), (1, 100, 1500, 20, 2, 1, np.float64),
    (2, 80, 3000, 400, 6, 7, np.float32), (3, 50, 800, 5, 3, 2, np.float32)])
@pytest.mark.parametrize('ap', ['standard', 'official'])
def test_eval_market_equals_reference(seed, nq, ng, n_ids, n_cams, decimals, dtype, ap):
    d, ids = _problem(nq, ng, n_ids, n_cams, seed, decimals)
    d = d.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        r = eval_market(d, **ids, max_rank=50, ap=ap)
    cmc, mAP, mINP = ref_eval_market(d, **ids, max_rank=50, ap=ap)
    np.testing.assert_allclose(r['cmc'], cmc, atol=1e-6)
    assert abs(r['mAP'] - mAP) < 1e-6 and abs(r['mINP'] - mINP) < 1e-6

def test_eval_market_noncontiguous_and_int_distances():
    d, ids = _problem(40, 300, 30, 3, 9, 1)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        a = eval_market(np.asfortranarray(d), **ids)                  # column-major input
        b = eval_market(np.rint(d * 10).astype(np.int32), **ids)             # integer distances (cast, same order)
    cmc, mAP, _ = ref_eval_market(d, **ids)
    assert abs(a['mAP'] - mAP) < 1e-6 and abs(b['mAP'] - mAP) < 1e-6

def _ref_cuhk03_classic(d, q_pids, g_pids, q_camids, g_camids, max_rank, repeats, seed):
    "Per query and per draw, one random gallery image per identity, ranked by a stable argsort."
    rng = np.random.default_rng(seed); cmcs, aps = [], []
    for i in range(len(q_pids)):
        ok = (g_pids != -1) & ~((g_pids == q_pids[i]) & (g_camids == q_camids[i]))
        ids = np.unique(g_pids[ok])
        if q_pids[i] not in ids: continue
        u = rng.random((repeats, len(ids)))                            # the same draws as the kit consumes
        cm, ap = np.zeros(max_rank), 0.
        for rep in range(repeats):
            pick = []
            for k, pid in enumerate(ids):
                members = np.flatnonzero(ok & (g_pids == pid))
                pick.append(members[int(np.floor(u[rep, k] * len(members)))])
            pick = np.sort(pick)                                        # ties: gallery index order
            order = pick[np.argsort(d[i, pick], kind='stable')]
            r = int(np.flatnonzero(g_pids[order] == q_pids[i])[0])
            cm[r:] += 1; ap += 1 / (r + 1)
        cmcs.append(cm / repeats); aps.append(ap / repeats)
    return np.mean(cmcs, 0), np.mean(aps)

def test_cuhk03_classic_equals_reference():
    d, ids = _problem(40, 400, 25, 2, 4, 2)
    ids = {k: np.asarray(v) for k, v in ids.items()}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        r = eval_cuhk03(d, **ids, max_rank=10, repeats=5, seed=7)
    cmc, mAP = _ref_cuhk03_classic(d, **ids, max_rank=10, repeats=5, seed=7)
    np.testing.assert_allclose(r['cmc'], cmc, atol=1e-12); assert abs(r['mAP'] - mAP) < 1e-12

@pytest.mark.parametrize('nq,ng,k1,k2', [(40, 400, 20, 6), (60, 300, 12, 4)])
def test_re_ranking_equals_reference(nq, ng, k1, k2):
    rng = np.random.default_rng(nq); c = rng.normal(size=(30, 24))
    qf = c[rng.integers(0, 30, nq)] + 0.7 * rng.normal(size=(nq, 24)); gf = c[rng.integers(0, 30, ng)] + 0.7 * rng.normal(size=(ng, 24))
    sym = lambda a: (a + a.T) / 2
    qg, qq, gg = compute_distance_matrix(qf, gf), sym(compute_distance_matrix(qf, qf)), sym(compute_distance_matrix(gf, gf))
    np.testing.assert_allclose(re_ranking(qg, qq, gg, k1, k2, block=64), ref_re_ranking(qg, qq, gg, k1, k2), atol=1e-6)

def test_real_market_ids_equal_reference():
    "The real Market-1501 query/gallery IDs and cameras (file names only) with random features: kit == reference."
    root = real_data_root()
    m = root/'Market-1501-v15.09.15' if root else None
    if m is None or not m.is_dir(): pytest.skip(MARKET_MISSING)
    pat = re.compile(r'^(-?\d+)_c(\d)s\d_\d+_\d+\.jpg')   # a few real names end in .jpg.jpg
    def parse(folder):
        r = [tuple(map(int, pat.match(p.name).groups())) for p in sorted((m/folder).iterdir()) if pat.match(p.name)]
        return np.array([x[0] for x in r]), np.array([x[1] for x in r])
    (q_pids, q_cams), (g_pids, g_cams) = parse('query'), parse('bounding_box_test')
    assert (len(q_pids), len(g_pids)) == (3368, 19732)
    rng = np.random.default_rng(0); sel = rng.choice(len(q_pids), 150, replace=False)
    centres = rng.normal(size=(1502, 32))
    gf = centres[np.where(g_pids > 0, g_pids, 1501)] + 1.2 * rng.normal(size=(len(g_pids), 32))
    qf = centres[q_pids[sel]] + 1.2 * rng.normal(size=(len(sel), 32))
    d = compute_distance_matrix(qf, gf)
    ids = dict(q_pids=q_pids[sel], g_pids=g_pids, q_camids=q_cams[sel], g_camids=g_cams)
    for ap in ('standard', 'official'):
        r = eval_market(d, **ids, ap=ap); cmc, mAP, mINP = ref_eval_market(d, **ids, ap=ap)
        np.testing.assert_allclose(r['cmc'], cmc, atol=1e-6)
        assert abs(r['mAP'] - mAP) < 1e-6 and abs(r['mINP'] - mINP) < 1e-6
        assert r['n_valid_queries'] == 150
