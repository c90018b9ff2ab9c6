"""Benchmark: exact silhouette for k = 2..10 on a 12,936 x 2,048 feature matrix (Market-1501 train size, ResNet50 dim),
slsr_nb.cluster.silhouette_many (one chunked pass for all k) against sklearn.metrics.silhouette_score (one call per k),
same data, same labels, same run. Prints the times, the speed-up and the largest difference.
The data are synthetic CNN-like features (non-negative, clustered, float32) unless --features names an .npz/.pt
file with a 'feats' array (e.g. real baseline features). Labels: one nearest-centre assignment per k (k-means-like
partitions, cheap to make).
Run: python tests/bench/bench_silhouette.py [--n 12936] [--d 2048] [--kmax 10]"""
import argparse, time
import numpy as np, torch
from sklearn.metrics import silhouette_score
from slsr_nb.cluster import silhouette_many, read_feature_set

def synthetic_feats(n:int, d:int, n_modes:int=30, seed:int=0)->np.ndarray:
    "ReLU'd Gaussian mixture: non-negative, far from the origin, loosely clustered, like pooled CNN features."
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.5, 0.5, size=(n_modes, d))
    X = centres[rng.integers(0, n_modes, n)] + rng.normal(0, 0.6, size=(n, d))
    return np.maximum(X, 0).astype(np.float32)

def nearest_centre_labels(X:np.ndarray, k:int, seed:int=0)->np.ndarray:
    rng = np.random.default_rng(seed + k)
    C = X[rng.choice(len(X), k, replace=False)].astype(np.float64)
    d = (C ** 2).sum(1)[None] - 2 * X.astype(np.float64) @ C.T
    return d.argmin(1)

def main(n:int=12936, d:int=2048, kmax:int=10, features:str|None=None, skip_sklearn:bool=False):
    X = read_feature_set(features)['feats'].astype(np.float32) if features else synthetic_feats(n, d)
    ks = list(range(2, kmax + 1)); labs = [nearest_centre_labels(X, k) for k in ks]
    print(f'data {X.shape} {X.dtype}, k = {ks[0]}..{ks[-1]}, torch threads {torch.get_num_threads()}')
    res = {}
    for name, dt in (('float64', torch.float64), ('float32', torch.float32)):
        t = time.perf_counter(); s = silhouette_many(X, labs, dtype=dt, device='cpu'); res[name] = (s, time.perf_counter() - t)
        print(f'slsr_nb silhouette_many ({name} products), all k in one pass: {res[name][1]:.1f} s')
    if skip_sklearn: return
    sk, t_sk = [], 0.
    for k, l in zip(ks, labs):
        t = time.perf_counter(); sk.append(silhouette_score(X, l)); dt = time.perf_counter() - t; t_sk += dt
        print(f'  sklearn k={k}: {sk[-1]:.8f} ({dt:.1f} s)   ours float64 {res["float64"][0][k-2]:.8f}  '
              f'float32 {res["float32"][0][k-2]:.8f}', flush=True)
    print(f'sklearn.metrics.silhouette_score, one call per k: {t_sk:.1f} s total')
    for name, (s, t) in res.items():
        diff = np.abs(np.array(s) - np.array(sk)).max()
        print(f'{name}: speed-up x{t_sk / t:.1f}, max |ours - sklearn| = {diff:.2e} '
              f'({"OK" if diff <= 1e-6 else "FAILS"} at 1e-6)')

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=12936); ap.add_argument('--d', type=int, default=2048)
    ap.add_argument('--kmax', type=int, default=10); ap.add_argument('--features', default=None)
    ap.add_argument('--skip-sklearn', action='store_true')
    a = ap.parse_args(); main(a.n, a.d, a.kmax, a.features, a.skip_sklearn)
