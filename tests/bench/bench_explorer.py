"""Time per interaction of the cluster explorer on a Market-1501-sized run (12,936 points by default).

A fake run folder is laid out as the pipeline does (features, clusters with a 2-D map, generated images), with blob
features, 751 identities over 6 cameras and small synthetic images. Then:
1. the Python side, headless: `from_run` (k-means for k=2..5, per-image silhouettes), building the widget
   (thumbnails), and each handler (box selection, identity, colour, k), medians of 5;
2. with --browser, the same interactions in headless Chromium on JupyterLab (see tests/test_jupyterlab.py).

    python tests/bench/bench_explorer.py --points 12936 --browser
"""
import argparse, statistics, sys, tempfile, time
from pathlib import Path
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def fake_run(root:Path, n:int, n_ids:int=751, n_cams:int=6, seed:int=0)->Path:
    "A run folder with `n` training images: features, clusters of k=2..5 (k=5 chosen), a 2-D map, generated images."
    from sklearn.datasets import make_blobs
    from slsr_nb.features import save_features
    from slsr_nb.cluster import choose_k, save_clusters
    rng = np.random.default_rng(seed); st = root/'stages'
    X, blob = make_blobs(n, n_features=32, centers=8, cluster_std=2.5, random_state=seed)
    pids = np.sort(rng.integers(0, n_ids, n)); cams = rng.integers(0, n_cams, n)
    colours = rng.integers(0, 255, (n_ids, 3))
    (root/'imgs').mkdir(parents=True)
    paths = []
    for i in range(n):
        a = np.empty((32, 16, 3), np.uint8); a[:16] = colours[pids[i]]; a[16:] = colours[(pids[i] * 7) % n_ids]
        paths.append(str(root/'imgs'/f'{i:06d}.png')); Image.fromarray(a).save(paths[-1])
    save_features(dict(feats=X, pids=pids, camids=cams, paths=paths), st/'features-bench'/'train')
    res = choose_k(X, ks=[5], n_init=2, seed=seed, verbose=False)
    save_clusters(st/'clusters-bench', res.labels, paths, pids, cams, res=res)
    emb = X[:, :2] + rng.normal(0, .3, (n, 2))
    np.save(st/'clusters-bench'/'umap.npy', emb.astype(np.float32))
    g = st/'generate-bench'; (g/'images').mkdir(parents=True)
    rows = []
    for c in range(5):
        for j in range(16):
            f = f'images/g{c}_{j}.png'; Image.fromarray(rng.integers(0, 255, (32, 16, 3), dtype=np.uint8)).save(g/f)
            rows.append(f'{f},{c},{j}')
    (g/'manifest.csv').write_text('file,cluster,seed\n' + '\n'.join(rows) + '\n')
    for d in ('features-bench', 'clusters-bench', 'generate-bench'): (st/d/'done.json').write_text('{}')
    (root/'params.yaml').write_text(f'k_min: 2\nk_max: 5\nseed: {seed}\n')
    return root


def _median(fn, reps=5):
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def python_side(run:Path)->dict:
    from slsr_nb.explorer import ClusterExplorer
    out = {}
    t = time.perf_counter(); ex = ClusterExplorer.from_run(run, consistency=False); out['from_run (first, fits k=2..5)'] = time.perf_counter() - t
    t = time.perf_counter(); ClusterExplorer.from_run(run, consistency=False); out['from_run (cached)'] = time.perf_counter() - t
    t = time.perf_counter(); ex.widget(); out['widget (first: thumbnails)'] = time.perf_counter() - t
    t = time.perf_counter(); ex.widget(); ui = ex.ui; out['widget (cached thumbnails)'] = time.perf_counter() - t
    box = np.flatnonzero((np.abs(ex.emb[:, 0] - np.median(ex.emb[:, 0])) < 2) & (np.abs(ex.emb[:, 1] - np.median(ex.emb[:, 1])) < 2))
    out[f'box selection of {len(box)} points'] = _median(lambda: ui.select(box))
    out['identity highlight'] = _median(lambda: ui.highlight_identity(int(ex.pids[len(ex.pids) // 2])))
    for by in ('identity', 'camera', 'silhouette', 'cluster'): out[f'colour by {by}'] = _median(lambda: ui.set_color(by))
    out['switch k (5 → 3 → 5)'] = _median(lambda: (ui.set_k(3), ui.set_k(5)), reps=3) / 2
    return out


def browser_side(run:Path)->dict:
    from playwright.sync_api import sync_playwright
    import test_jupyterlab as T
    from slsr_nb.explorer import finished_stage
    from slsr_nb.features import load_features
    emb = np.load(finished_stage(run, 'clusters')/'umap.npy')
    pids = np.asarray(load_features(finished_stage(run, 'features')/'train')['pids'])
    work = Path(tempfile.mkdtemp(prefix='slsr_bench_lab_'))
    proc, base, token, log = T._start_lab(work)
    try:
        T._wait_lab(proc, base, token, work); T._explorer_notebook(work, run)
        with sync_playwright() as p:
            ctx = T._browser(p, work/'profile'); page = ctx.pages[0] if ctx.pages else ctx.new_page()
            try: return T.explore(page, base, token, emb, pids, art=work/'shots')
            finally: ctx.close()
    finally:
        T._stop_lab(proc, base, token, log)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--points', type=int, default=12936)
    ap.add_argument('--browser', action='store_true', help='also time the interactions in headless Chromium')
    ap.add_argument('--run', help='reuse a fake run folder made earlier')
    a = ap.parse_args()
    t = time.perf_counter()
    run = Path(a.run) if a.run else fake_run(Path(tempfile.mkdtemp(prefix='slsr_bench_run_')), a.points)
    print(f'fake run of {a.points} points: {run} ({time.perf_counter() - t:.0f} s)')
    for k, v in python_side(run).items(): print(f'python  {k}: {v * 1000:.0f} ms')
    if a.browser:
        for k, v in browser_side(run).items(): print(f'browser {k}: {v:.2f} s')
