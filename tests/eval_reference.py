"""Direct, slow reference implementations used by tests/test_eval.py and tests/bench/bench_eval.py.

`ref_eval_market` is the straightforward NumPy evaluator of the common toolkits (a stable argsort of every row, then a
loop over queries), with the official Market-1501 AP as a line-by-line rendering of the MATLAB `compute_AP` loop.
`ref_re_ranking` follows the seven steps of Zhong et al. (CVPR 2017) literally, with dense N x N arrays.
Both are written from the protocol / paper, not copied, and are deliberately simple rather than fast."""
import numpy as np

def ref_eval_market(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, ap='standard'):
    "(cmc, mAP, mINP) of the Market-1501 protocol; ties broken by gallery index (stable argsort)."
    q_pids, g_pids, q_camids, g_camids = map(np.asarray, (q_pids, g_pids, q_camids, g_camids))
    cmcs, aps, inps = [], [], []
    for i in range(len(q_pids)):
        order = np.argsort(distmat[i], kind='stable')
        junk = (g_pids[order] == -1) | ((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        good = (g_pids[order] == q_pids[i]) & ~junk
        if not good.any(): continue
        raw = good[~junk].astype(float)
        if ap == 'official':
            ngood = good.sum(); old_r, old_p, a, hits, j, nj, cmc = 0., 1., 0., 0, 0, 0, np.zeros(len(order))
            for n in range(len(order)):
                if good[n]: cmc[n - nj:] = 1
                if junk[n]: nj += 1; continue
                if good[n]: hits += 1
                rec, pre = hits / ngood, hits / (j + 1)
                a += (rec - old_r) * (old_p + pre) / 2; old_r, old_p = rec, pre; j += 1
                if hits == ngood: break
            aps.append(a)
        else:
            cmc = raw.cumsum(); cmc[cmc > 1] = 1
            aps.append(((raw.cumsum() / np.arange(1, len(raw) + 1)) * raw).sum() / raw.sum())
        cmcs.append(np.pad(cmc[:max_rank], (0, max(0, max_rank - len(cmc))), 'edge'))
        inps.append(raw.sum() / (np.flatnonzero(raw).max() + 1))
    return np.mean(cmcs, 0), float(np.mean(aps)), float(np.mean(inps))

def ref_re_ranking(q_g, q_q, g_g, k1=20, k2=6, lam=0.3):
    "k-reciprocal re-ranking with dense arrays, step by step as in the paper (stable sort for ties)."
    nq = q_g.shape[0]
    d = np.concatenate([np.concatenate([q_q, q_g], 1), np.concatenate([q_g.T, g_g], 1)], 0)
    d = np.power(d, 2).astype(np.float32)
    d = np.transpose(d / np.max(d, axis=0))
    N = d.shape[0]; V = np.zeros_like(d)
    rank = np.argsort(d, axis=1, kind='stable')
    def recip(i, k): fw = rank[i, :k + 1]; return fw[np.where(rank[fw, :k + 1] == i)[0]]
    kh = int(np.around(k1 / 2))
    for i in range(N):
        R = recip(i, k1); Rs = R
        for c in R:
            Rc = recip(c, kh)
            if len(np.intersect1d(Rc, R)) > 2 / 3 * len(Rc): Rs = np.append(Rs, Rc)
        Rs = np.unique(Rs); w = np.exp(-d[i, Rs]); V[i, Rs] = w / np.sum(w)
    if k2 != 1: V = np.stack([V[rank[i, :k2]].mean(0) for i in range(N)])
    jac = np.zeros((nq, N), np.float32)
    for i in range(nq): jac[i] = np.minimum(V[i][None], V).sum(1)
    jac = 1 - jac / (2 - jac)
    return (jac * (1 - lam) + d[:nq] * lam)[:, nq:]
