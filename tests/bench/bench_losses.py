"""Time the label-smoothing loss used in training (slsr_nb.losses.SmoothingLoss, sparse index sets) against plain
cross-entropy and the dense reference -(q * log_softmax(z)).sum(1).mean() with q precomputed, forward + backward,
at the paper's K (751 Market, 1,367 CUHK03). Best of several repeats (the machine may be shared).
Usage: python tests/bench/bench_losses.py [--batch 32] [--reps 100] [--threads 1]"""
import argparse, time
import torch, torch.nn.functional as F
from slsr_nb.losses import SmoothingLoss, label_dist

def _best(fn, reps, rounds=5):
    for _ in range(10): fn()
    ts = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps): fn()
        ts.append((time.perf_counter() - t) / reps * 1e3)
    return min(ts)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--batch', type=int, default=32); ap.add_argument('--reps', type=int, default=100)
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args(); torch.set_num_threads(a.threads); torch.manual_seed(0)
    print(f'torch {torch.__version__}, threads {a.threads}, batch {a.batch} (1/4 generated); ms per forward+backward, best of 5')
    for K, k in ((751, 3), (1367, 3), (751, 5)):
        S = [torch.randperm(K)[:K // 2].sort().values for _ in range(k)]
        B = a.batch; clusters = torch.full((B,), -1); clusters[3::4] = torch.arange(len(clusters[3::4])) % k
        pids = torch.randint(0, K, (B,)); batch = {'pid': pids, 'cluster': clusters}
        z = torch.randn(B, K, requires_grad=True)
        q = label_dist(pids, K, 'slsr', clusters, cluster_ids=S)
        slsr, noisy, lsro = SmoothingLoss(K, 'slsr', S), SmoothingLoss(K, 'slsr', S, noise=True), SmoothingLoss(K, 'lsro')
        row = {'slsr': lambda: slsr(z, batch).backward(), 'slsr+noise': lambda: noisy(z, batch).backward(),
               'lsro': lambda: lsro(z, batch).backward(),
               'dense ref': lambda: (-(q * F.log_softmax(z, 1)).sum(1).mean()).backward(),
               'plain CE': lambda: F.cross_entropy(z, pids).backward()}
        print(f'K={K:5d} k={k}: ' + ' | '.join(f'{n} {_best(f, a.reps):.3f}' for n, f in row.items()))

if __name__ == '__main__': main()
