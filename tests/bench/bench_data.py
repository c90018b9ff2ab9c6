"""Benchmark of the data layer on the real Market-1501 (skips where absent): listing time, image decode rate, and
loader throughput with the paper's train transform at 256x128 and at the small CPU size 128x64.
Run: python tests/bench/bench_data.py [--n 2000] [--workers 0]"""
import argparse, time, sys
from slsr_nb.core import real_data_root, MARKET_MISSING, seed_everything
from slsr_nb.data.datasets import load_dataset, verify_images, build_transforms, build_loader

def main(n:int=2000, workers:int=0):
    root = real_data_root()
    if root is None or not (root/'Market-1501-v15.09.15').is_dir(): print(MARKET_MISSING); return
    t = time.perf_counter(); data = load_dataset('market1501', root, verbose=False); t_list = time.perf_counter() - t
    print(f'list+parse Market-1501 (36,036 names): {t_list:.2f} s')
    recs = data.train[:n]
    t = time.perf_counter(); verify_images(recs); t_dec = time.perf_counter() - t
    print(f'verify_images (decode) {len(recs)} images: {t_dec:.2f} s = {len(recs)/t_dec:.0f} img/s '
          f'(whole set ~{36036/(len(recs)/t_dec):.0f} s)')
    for h, w in [(256, 128), (128, 64)]:
        for sampler in ('random', 'identity'):
            seed_everything(0)
            dl = build_loader(recs, build_transforms(h, w), batch_size=32, sampler=sampler, num_workers=workers)
            t = time.perf_counter(); k = sum(b['img'].shape[0] for b in dl); dt = time.perf_counter() - t
            print(f'loader {h}x{w} train transform, sampler={sampler}, workers={workers}: {k/dt:.0f} img/s')

if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--n', type=int, default=2000); ap.add_argument('--workers', type=int, default=0)
    a = ap.parse_args(); main(a.n, a.workers)
