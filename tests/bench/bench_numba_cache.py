"""Benchmark: no numba compile pause on first use (issue 13, item 5). Prints its figures; not a test.

Each figure comes from fresh Python processes, so that nothing is compiled or loaded already:
  1. cold: an empty numba cache (NUMBA_CACHE_DIR set to a new folder): the first call compiles;
  2. after setup: `warm_kernels()` has filled that cache in an earlier process (as `.ci/setup` does); the first
     call of a new process loads the machine code; then the median of warm calls in the same process.
  3. the same, with numba's own start-up (its typing and target tables) timed on its own before the first call
     (the import's start-up thread turned off with SLSR_NUMBA_START=0, so that it is measured here);
  4. after setup, a first call that comes 1 s after the import (as in a pipeline, which extracts features first):
     importing `slsr_nb.eval.metrics` starts numba in a background thread, done by then.
The goal is "first call after setup within 2x of a warm call", for `eval_market` at 1,000 x 6,000 and at the full
Market-1501 size 3,368 x 19,732 (clustered features) and `re_ranking` at 500 x 3,000 (the size where the pause was seen).

Run:  python tests/bench/bench_numba_cache.py [--runs 2] [--only re_ranking]"""
import argparse, json, os, platform, subprocess, sys, tempfile
from pathlib import Path

CHILD = r'''
import json, sys, time, statistics, warnings
t0 = time.perf_counter()
import numpy as np
import slsr_nb.eval.metrics as m
t_import = time.perf_counter() - t0
what, runs, warm_first, split, delay = sys.argv[1], int(sys.argv[2]), sys.argv[3] == '1', sys.argv[4] == '1', float(sys.argv[5])
if warm_first: m.warm_kernels(); print(json.dumps({})); sys.exit()
rng = np.random.default_rng(0)
if what.startswith('eval_market'):
    nq, ng, dim = (3368, 19732, 64) if what == 'eval_market_full' else (1000, 6000, 64)   # clustered features
    c = rng.normal(size=(300, dim)); qp, gp = rng.integers(0, 300, nq), rng.integers(0, 300, ng)
    d = m.compute_distance_matrix(c[qp] + rng.normal(size=(nq, dim)), c[gp] + rng.normal(size=(ng, dim)))
    args = (d, qp, gp, rng.integers(1, 7, nq), rng.integers(1, 7, ng))
    fn = lambda: m.eval_market(*args)
else:
    qf, gf = rng.normal(size=(500, 64)).astype(np.float32), rng.normal(size=(3000, 64)).astype(np.float32)
    mats = [m.compute_distance_matrix(a, b) for a, b in ((qf, gf), (qf, qf), (gf, gf))]
    fn = lambda: m.re_ranking(*mats)
time.sleep(max(0., delay - (time.perf_counter() - t0 - t_import)))   # the first call comes `delay` s after the import
def timed():
    t = time.perf_counter(); fn(); return time.perf_counter() - t
t_init = 0.
if split:   # numba's own start-up alone: the typing and target tables every cached kernel needs before it loads
    t = time.perf_counter()
    from numba.core.registry import cpu_target
    cpu_target.typing_context.refresh(); cpu_target.target_context.refresh()
    t_init = time.perf_counter() - t
with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    first = timed(); warm = [timed() for _ in range(runs)]
print(json.dumps(dict(import_s=t_import, init_s=t_init, first_s=first, warm_s=statistics.median(warm))))
'''

def cpu_name():
    for line in Path('/proc/cpuinfo').read_text().splitlines() if Path('/proc/cpuinfo').exists() else []:
        if line.startswith('model name'): return line.split(':', 1)[1].strip()
    return platform.processor() or 'unknown CPU'

def child(what, runs, cache_dir, warm_first=False, split=False, delay=0.):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), **({'SLSR_NUMBA_START': '0'} if split else {}))
    out = subprocess.run([sys.executable, '-c', CHILD, what, str(runs), '1' if warm_first else '0', '1' if split else '0',
                          str(delay)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])

SIZES = dict(eval_market='1,000 x 6,000', eval_market_full='3,368 x 19,732', re_ranking='500 x 3,000')

def main(runs=2, only=None):
    print(f'CPU: {cpu_name()} ({os.cpu_count()} logical cores; shared with other work: figures are noisy)')
    for what in [only] if only else ('eval_market', 'eval_market_full', 're_ranking'):
        with tempfile.TemporaryDirectory() as cache:
            cold = child(what, runs, cache)                  # empty cache: compiles
        with tempfile.TemporaryDirectory() as cache:
            child(what, runs, cache, warm_first=True)        # the setup step
            after = [child(what, runs, cache) for _ in range(runs)]   # fresh processes after setup
            split = [child(what, runs, cache, split=True) for _ in range(runs)]   # numba's start-up timed apart
            later = [child(what, runs, cache, delay=1.) for _ in range(runs)]     # the first call 1 s after the import
        med = lambda rs, k: sorted(a[k] for a in rs)[len(rs) // 2]
        first, warm = med(after, 'first_s'), med(after, 'warm_s')
        print(f'{what} {SIZES[what]}: cold first call {cold["first_s"]:.2f} s (compiles; warm {cold["warm_s"]*1000:.0f} ms); '
              f'after setup, median over {runs} fresh processes: first call {first*1000:.0f} ms, warm call {warm*1000:.0f} ms, '
              f'ratio {first/warm:.2f} (goal <= 2); import of slsr_nb.eval.metrics {med(after, "import_s"):.2f} s')
        print(f'   of which numba\'s start-up (typing and target tables, timed before the first call in {runs} other fresh '
              f'processes): {med(split, "init_s")*1000:.0f} ms; first call after it {med(split, "first_s")*1000:.0f} ms '
              f'(warm {med(split, "warm_s")*1000:.0f} ms): what loading the cached kernel and starting its threads add')
        lf, lw = med(later, 'first_s'), med(later, 'warm_s')
        print(f'   first call 1 s after the import (numba started in the background meanwhile): {lf*1000:.0f} ms, '
              f'warm {lw*1000:.0f} ms, ratio {lf/lw:.2f} (goal <= 2)')

if __name__ == '__main__':
    p = argparse.ArgumentParser(); p.add_argument('--runs', type=int, default=2)
    p.add_argument('--only', choices=tuple(SIZES), default=None)
    a = p.parse_args(); main(a.runs, a.only)
