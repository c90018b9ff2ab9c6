"""`slsr eval` against reading the same file plus the peers' own evaluation, at Market-1501 scale.

3,368 queries x 19,732 gallery images, 512-d random features with Market-like ids and cameras (tests/test_interop.py's
`market_like`: 750 identities, distractors and junk in the gallery), written as layumi's pytorch_result.mat and as
torchreid's variables in an .npz. Timed, each the median of --repeats runs within this one process:

* kit, .mat:  `eval_files` (what `slsr eval FILE --ap official --metric cosine` runs: read, check, distances, score)
* layumi:     scipy.io.loadmat + layumi's evaluate_gpu.py loop (one dot product, argsort and mask per query) in NumPy
* kit, .npz:  `eval_files` (`slsr eval FILE`: euclidean, standard AP)
* torchreid:  np.load + squared-euclidean distances (float32 torch, as torchreid) + the per-query NumPy evaluation of
              tests/eval_reference.py (the logic of torchreid's Python `eval_market1501`; its Cython build is not installed here)
then the evaluation alone (`eval_market` against the reference on one distance matrix), and once `slsr eval FILE` as a command (interpreter and imports included). Prints the times and the ratios.

    python tests/bench/bench_interop.py [--repeats 3]
"""
import argparse, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import scipy.io
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from test_interop import market_like, write_layumi, write_torchreid, layumi_eval, SLSR
from eval_reference import ref_eval_market
from slsr_nb.interop import eval_files
from slsr_nb.eval.metrics import eval_market


def median_time(fn, repeats):
    ts, out = [], None
    for _ in range(repeats):
        t = time.perf_counter(); out = fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def layumi_peer(path):
    m = scipy.io.loadmat(str(path))
    return layumi_eval(m['query_f'], m['query_label'][0], m['query_cam'][0], m['gallery_f'], m['gallery_label'][0],
                       m['gallery_cam'][0])


def torchreid_distance(qf, gf):
    "Squared euclidean distances in float32 torch, the way torchreid's `euclidean_squared_distance` computes them."
    q, g = torch.from_numpy(qf), torch.from_numpy(gf)
    d = q.pow(2).sum(1, keepdim=True) + g.pow(2).sum(1, keepdim=True).t()
    return d.addmm_(q, g.t(), beta=1, alpha=-2).numpy()


def torchreid_peer(path):
    z = np.load(path)
    return ref_eval_market(torchreid_distance(z['qf'], z['gf']), z['q_pids'], z['g_pids'], z['q_camids'], z['g_camids'])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repeats', type=int, default=3)
    a = ap.parse_args()
    d = market_like(noise=2.2)  # noise for a Market-like difficulty (rank-1 around 90%, mAP around 50%)
    tmp = Path(tempfile.mkdtemp())
    mat, npz = write_layumi(tmp/'pytorch_result.mat', d), write_torchreid(tmp/'features.npz', d)
    print(f'{len(d["qf"])} queries x {len(d["gf"])} gallery, {d["qf"].shape[1]}-d; torch threads {torch.get_num_threads()}, '
          f'cpus {os.cpu_count()}, median of {a.repeats}')
    eval_files([npz])  # warm-up: numba's compiled kernels load from its cache on the first call
    rows = []
    t_kit_mat, r = median_time(lambda: eval_files([mat], ap='official', metric='cosine'), a.repeats)
    t_lay, (cmc, mAP) = median_time(lambda: layumi_peer(mat), a.repeats)
    got = r['results']['pytorch_result']
    rows.append(('layumi .mat', t_kit_mat, t_lay, got, mAP, cmc))
    t_kit_npz, r = median_time(lambda: eval_files([npz]), a.repeats)
    t_tr, (cmc, mAP, mINP) = median_time(lambda: torchreid_peer(npz), a.repeats)
    got = r['results']['features']
    rows.append(('torchreid .npz', t_kit_npz, t_tr, got, mAP, cmc))
    for name, tk, tp, got, mAP, cmc in rows:
        diff = max(abs(got['mAP'] - 100 * mAP), abs(got['rank1'] - 100 * cmc[0]))
        assert diff < 0.05, (name, got, mAP, cmc[0])   # float32 near-ties may order differently; nothing more
        print(f'{name:15s} slsr eval {tk:6.2f}s   peer (read + own evaluation) {tp:7.2f}s   ratio {tp / tk:5.1f}x   '
              f'(rank-1 {got["rank1"]:.2f}, mAP {got["mAP"]:.2f}; the peer differs by {diff:.1e} points)')
    z = np.load(npz); D = torchreid_distance(z['qf'], z['gf']); ids = [z[k] for k in ('q_pids', 'g_pids', 'q_camids', 'g_camids')]
    t_ev, _ = median_time(lambda: eval_market(D, *ids), a.repeats)
    t_ref, _ = median_time(lambda: ref_eval_market(D, *ids), a.repeats)
    print(f'evaluation alone, same distance matrix: eval_market {t_ev:.2f}s, per-query NumPy reference {t_ref:.2f}s, '
          f'ratio {t_ref / t_ev:.1f}x')
    t = time.perf_counter()
    subprocess.run([SLSR, 'eval', str(mat), '--ap', 'official', '--metric', 'cosine'], check=True, capture_output=True)
    t_cmd = time.perf_counter() - t
    print(f'`slsr eval pytorch_result.mat` as a command, start-up included: {t_cmd:.2f}s '
          f'(ratio to layumi {t_lay / t_cmd:.1f}x)')


if __name__ == '__main__': main()
