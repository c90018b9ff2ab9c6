"""Benchmark of slsr_nb.eval on a Market-1501-sized problem: the real query/gallery IDs and cameras (parsed from the
file names of the real data set; no image is read) with synthetic features. Prints its figures; not a test.

  1. eval_market (CMC + mAP + mINP) on 3,368 x 19,732 vs the argsort-every-row NumPy reference, same run, same data,
     and a check that both give the same numbers; and against the memory floor: one parallel pass that reads every
     distance once (the least any evaluator must do), timed in turns with eval_market (goal: <= 50 ms warm).
  2. re_ranking on 500 x 3,000 (median) and, once, the dense step-by-step reference on the same problem.
  3. re_ranking on the full 3,368 x 19,732 (+ 3,368^2 and 19,732^2 float32 inputs): time and peak RSS.

Run:  python tests/bench/bench_eval.py [--runs 5] [--ref-runs 3] [--skip-full-rerank]
Without the real data set the IDs and cameras are drawn at random with Market-1501's sizes (said in the output)."""
import argparse, re, sys, time, statistics, warnings, resource
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eval_reference import ref_eval_market, ref_re_ranking
from slsr_nb.core import real_data_root
from slsr_nb.eval.metrics import compute_distance_matrix, eval_market
from slsr_nb.eval.rerank import re_ranking
from slsr_nb.precision import interleaved_medians

_NAME = re.compile(r'^(-?\d+)_c(\d)s\d_\d+_\d+\.jpg')   # a few real names end in .jpg.jpg

def market_ids():
    "(q_pids, q_cams, g_pids, g_cams, source) from the real Market-1501 file names, or random stand-ins."
    root = real_data_root()
    m = root/'Market-1501-v15.09.15' if root else None
    if m is not None and (m/'query').is_dir():
        def parse(folder):
            recs = [tuple(map(int, _NAME.match(p.name).groups())) for p in sorted((m/folder).iterdir()) if _NAME.match(p.name)]
            return np.array([r[0] for r in recs]), np.array([r[1] for r in recs])
        return (*parse('query'), *parse('bounding_box_test'), 'real Market-1501 file names')
    rng = np.random.default_rng(0)
    q = rng.integers(1, 751, 3368); g = np.concatenate([rng.integers(1, 751, 13000), np.zeros(3934, int), -np.ones(2798, int)])
    return q, rng.integers(1, 7, 3368), g, rng.integers(1, 7, len(g)), 'random stand-ins (real data absent)'

def synthetic_features(q_pids, q_cams, g_pids, g_cams, dim=128, noise=1.2, cam_bias=0.5, seed=0):
    "Identity centre + camera bias + noise; junk and distractors get their own random centres."
    rng = np.random.default_rng(seed)
    ids = np.unique(np.concatenate([q_pids, g_pids])); centres = rng.normal(size=(len(ids), dim))   # one row per ID
    cam = rng.normal(scale=cam_bias, size=(8, dim))
    def feats(pids, cams):   # whole arrays, no per-image rows: nothing left behind in the heap to inflate RSS
        base = centres[np.searchsorted(ids, pids)]
        own = pids <= 0
        base[own] = rng.normal(size=(int(own.sum()), dim))
        return (base + cam[cams] + noise * rng.normal(size=(len(pids), dim))).astype(np.float32)
    return feats(q_pids, q_cams), feats(g_pids, g_cams)

def subset(q_pids, g_pids, nq=500, ng=3000, seed=0):
    "Indices of nq queries and ng gallery images: the queries' identities' gallery images, filled with other images."
    rng = np.random.default_rng(seed); ids = rng.permutation(np.unique(q_pids))
    n_ids = np.searchsorted(np.cumsum([(q_pids == p).sum() for p in ids]), nq) + 1
    qs = np.flatnonzero(np.isin(q_pids, ids[:n_ids]))[:nq]
    own = np.flatnonzero(np.isin(g_pids, q_pids[qs]))[:ng]
    rest = rng.choice(np.flatnonzero(~np.isin(g_pids, q_pids[qs])), ng - len(own), replace=False)
    return qs, np.sort(np.concatenate([own, rest]))

def read_floor(dist):
    "A parallel numba pass reading every distance once (their maximum): what any evaluator must at least spend."
    from numba import njit, prange
    @njit(parallel=True, cache=False)
    def row_max(d):
        out = np.empty(d.shape[0], d.dtype)
        for i in prange(d.shape[0]): out[i] = d[i].max()
        return out
    row_max(dist[:2])   # compile outside the timing
    return lambda: row_max(dist)

def timed(fn, runs):
    ts = []
    for _ in range(runs):
        t = time.perf_counter(); out = fn(); ts.append(time.perf_counter() - t)
    return out, statistics.median(ts), ts

def peak_rss_during(fn):
    "Run fn; return (result, seconds, peak RSS in GiB during the call, RSS before in GiB) (Linux: VmHWM reset)."
    def status(key):
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith(key): return int(line.split()[1]) / 2**20
    try: Path('/proc/self/clear_refs').write_text('5')
    except OSError: pass
    before = status('VmRSS:')
    t = time.perf_counter(); out = fn(); dt = time.perf_counter() - t
    return out, dt, status('VmHWM:'), before

def main(runs=5, ref_runs=3, skip_full_rerank=False, dim=128):
    import numba
    print(f'numpy {np.__version__}, numba {numba.__version__}, threads {numba.get_num_threads()}')
    q_pids, q_cams, g_pids, g_cams, src = market_ids()
    print(f'IDs/cameras: {src}: {len(q_pids)} queries x {len(g_pids)} gallery '
          f'({(g_pids == -1).sum()} junk, {(g_pids == 0).sum()} distractors)')
    qf, gf = synthetic_features(q_pids, q_cams, g_pids, g_cams, dim=dim)
    t = time.perf_counter(); dist = compute_distance_matrix(qf, gf); t_dist = time.perf_counter() - t
    print(f'compute_distance_matrix {dist.shape} x {dim}-d: {t_dist:.2f} s')
    ids = dict(q_pids=q_pids, g_pids=g_pids, q_camids=q_cams, g_camids=g_cams)

    # 1. eval_market vs the argsort reference
    t = time.perf_counter(); eval_market(dist[:2], **{k: (v[:2] if k[0] == 'q' else v) for k, v in ids.items()}, max_rank=50)
    print(f'first call (numba compile or cache load): {time.perf_counter() - t:.2f} s')
    for ap in ('standard', 'official'):
        res, t_fast, ts = timed(lambda: eval_market(dist, **ids, max_rank=50, ap=ap), runs)
        (cmc, mAP, mINP), t_ref, rts = timed(lambda: ref_eval_market(dist, **ids, max_rank=50, ap=ap), max(ref_runs, 1) if ap == "standard" else 1)
        err = max(np.abs(res['cmc'] - cmc).max(), abs(res['mAP'] - mAP), abs(res['mINP'] - mINP))
        print(f"eval_market ap={ap}: median {1000*t_fast:.0f} ms over {runs} runs ({', '.join(f'{1000*x:.0f}' for x in ts)} ms); "
              f"NumPy argsort reference median {t_ref:.1f} s over {len(rts)} runs; speed-up {t_ref/t_fast:.0f}x; "
              f"max |difference| {err:.1e}")
        print(f"   rank-1 {100*res['cmc'][0]:.2f}  mAP {100*res['mAP']:.2f}  mINP {100*res['mINP']:.2f}  "
              f"valid queries {res['n_valid_queries']}/{res['n_queries']}")

    floor = read_floor(dist)
    t_eval, t_floor = interleaved_medians([lambda: eval_market(dist, **ids, max_rank=50), floor], max(runs, 5))
    print(f'eval_market vs the read floor (one parallel pass over the {dist.nbytes/2**20:.0f} MiB of distances), in turns, '
          f'median of {max(runs, 5)}: {1000*t_eval:.0f} ms vs {1000*t_floor:.0f} ms ({t_eval/t_floor:.2f}x the floor; '
          f'{dist.nbytes/t_floor/1e9:.1f} GB/s read); goal <= 50 ms')

    # 2. re-ranking 500 x 3,000
    sq, sg = subset(q_pids, g_pids, 500, 3000)
    qg, qq, gg = dist[np.ix_(sq, sg)], compute_distance_matrix(qf[sq], qf[sq]), compute_distance_matrix(gf[sg], gf[sg])
    t = time.perf_counter(); re_ranking(qg[:5, :50], qq[:5, :5], gg[:50, :50], k1=5); print(f're_ranking first call (compile/cache): {time.perf_counter()-t:.2f} s')
    rr, t_rr, ts = timed(lambda: re_ranking(qg, qq, gg), runs)
    print(f"re_ranking 500 x 3,000: median {1000*t_rr:.0f} ms over {runs} runs ({', '.join(f'{1000*x:.0f}' for x in ts)} ms)")
    if ref_runs:
        ref, t_ref, _ = timed(lambda: ref_re_ranking(qg, qq, gg), 1)
        print(f'   dense step-by-step reference: {t_ref:.1f} s ({t_ref/t_rr:.0f}x); max |difference| {np.abs(rr - ref).max():.1e}')
    sub = {k: v[sq] if k[0] == 'q' else v[sg] for k, v in ids.items()}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        a, b = eval_market(qg, **sub), eval_market(rr, **sub)
    print(f"   mAP {100*a['mAP']:.2f} -> {100*b['mAP']:.2f} re-ranked; rank-1 {100*a['cmc'][0]:.2f} -> {100*b['cmc'][0]:.2f}")
    del qg, qq, gg, rr

    # 3. full Market-scale re-ranking
    if skip_full_rerank: return
    qq, gg = compute_distance_matrix(qf, qf), compute_distance_matrix(gf, gf)
    inputs = (dist.nbytes + qq.nbytes + gg.nbytes) / 2**30
    rr, dt, peak, before = peak_rss_during(lambda: re_ranking(dist, qq, gg))
    print(f're_ranking full {dist.shape[0]} x {dist.shape[1]}: {dt:.1f} s; peak RSS during the call {peak:.2f} GiB '
          f'(RSS before {before:.2f} GiB, of which float32 inputs {inputs:.2f} GiB); '
          f'ru_maxrss of the whole process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/2**20:.2f} GiB')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        a, b = eval_market(dist, **ids), eval_market(rr, **ids)
    print(f"   mAP {100*a['mAP']:.2f} -> {100*b['mAP']:.2f} re-ranked; rank-1 {100*a['cmc'][0]:.2f} -> {100*b['cmc'][0]:.2f}")

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--runs', type=int, default=5); p.add_argument('--ref-runs', type=int, default=3)
    p.add_argument('--skip-full-rerank', action='store_true'); p.add_argument('--dim', type=int, default=128)
    a = p.parse_args(); main(a.runs, a.ref_runs, a.skip_full_rerank, a.dim)
