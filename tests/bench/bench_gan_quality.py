"""Benchmark: GAN variants compared per cluster at one training budget (issue 18, item 3).

Trains every variant of `slsr_nb.gan.GAN_VARIANTS` (or those named with --variants) on each cluster under the same
budget per cluster (--budget-s seconds of training, stopping after the first epoch past it, or --epochs), generates
--n-per-cluster images per cluster from each, and prints per variant and cluster: epochs and seconds trained, the CNN
cluster consistency, KID to the own cluster (+- SE), the KID margin to the nearest other cluster, precision and
recall, all in the re-id network's feature space (`slsr_nb.gan.gan_quality`). Everything lands in --out
(compare.json, one folder per variant with quality.json and a generated-only samples.png).

Real Market-1501 (the measurement of item 3; long: budget x clusters x variants; run it alone):
    python tests/bench/bench_gan_quality.py \
        --clusters RUN/stages/clusters --model RUN/stages/baseline/model.pt --budget-s 300 --out runs/gan_variants
  (--clusters: a folder written by slsr_nb.cluster.save_clusters; --model: the baseline whose features were clustered)
Synthetic smoke (minutes): the kit's synthetic set, clustered by k-means on a colour-layout feature, which also
serves as the feature space unless --model is given:
    python tests/bench/bench_gan_quality.py --synthetic --budget-s 15 --out /tmp/gan_variants
Prints the table and a final JSON line (variant -> cluster -> numbers).
"""
import argparse, json, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F


def colour_layout(x):
    "A fixed feature with no weights: the mean colour of an 8 x 4 grid of cells (96-d)."
    return F.adaptive_avg_pool2d(x, (8, 4)).flatten(1)


def cnn_features(model_path, device):
    from slsr_nb.models import load_model
    model = load_model(model_path).eval().to(device)
    return lambda x: model.features(x, 'pool')


def synthetic_clusters(root, k, seed, n_ids):
    "The synthetic training set, clustered by k-means on the colour-layout feature."
    from slsr_nb.data.datasets import load_dataset
    from slsr_nb.gan import load_images
    from slsr_nb.cluster import kmeans
    data = load_dataset('synthetic', root, n_ids=n_ids, seed=seed)
    paths = [r[0] for r in data.train]
    small = load_images(paths, 64, 32).float() / 255
    labels, _ = kmeans(colour_layout(small).numpy(), k, seed=seed)
    return paths, labels


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument('--clusters', help='a clustering folder (slsr_nb.cluster.save_clusters)')
    src.add_argument('--synthetic', action='store_true', help='the synthetic set, clustered here (a smoke run)')
    ap.add_argument('--model', help='kit model file whose pooled features are the feature space (default with '
                    '--synthetic: a colour-layout feature)')
    budget = ap.add_mutually_exclusive_group(required=True)
    budget.add_argument('--budget-s', type=float, help='training seconds per cluster and variant')
    budget.add_argument('--epochs', type=int, help='epochs per cluster and variant')
    ap.add_argument('--variants', help='comma-separated names of GAN_VARIANTS (default: all)')
    ap.add_argument('--gan-size', type=int, default=64, help='GAN height (width is half)')
    ap.add_argument('--feature-size', default='128x64', help='input size of the feature model, HxW')
    ap.add_argument('--n-per-cluster', type=int, default=300)
    ap.add_argument('--ngf', type=int, default=32)
    ap.add_argument('--ndf', type=int, default=32)
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--k', type=int, default=3, help='clusters of the synthetic set')
    ap.add_argument('--n-ids', type=int, default=80, help='identities of the synthetic set')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--out', required=True)
    a = ap.parse_args(argv)
    from slsr_nb.gan import GAN_VARIANTS, compare_gan_variants
    if a.clusters and not a.model: ap.error('--clusters needs --model (the re-id network whose features were clustered)')
    names = a.variants.split(',') if a.variants else list(GAN_VARIANTS)
    if bad := [n for n in names if n not in GAN_VARIANTS]: ap.error(f'unknown variants {bad}; known: {list(GAN_VARIANTS)}')
    fh, fw = map(int, a.feature_size.split('x'))
    dev = torch.device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        if a.synthetic: paths, labels = synthetic_clusters(tmp, a.k, a.seed, a.n_ids)
        else:
            from slsr_nb.cluster import load_clusters
            cl = load_clusters(a.clusters); paths, labels = list(cl['paths']), np.asarray(cl['labels'])
        feats = cnn_features(a.model, dev) if a.model else colour_layout
        sizes = {int(c): int((np.asarray(labels) == c).sum()) for c in np.unique(labels) if c >= 0}
        print(f'torch {torch.__version__}, threads {torch.get_num_threads()}; {len(paths)} images in clusters {sizes}; '
              f'features: {a.model or "colour layout (8x4 mean colours)"}; budget per cluster: '
              f'{f"{a.budget_s:g} s" if a.budget_s is not None else f"{a.epochs} epochs"}; GAN '
              f'{a.gan_size}x{a.gan_size // 2}, ngf=ndf={a.ngf}/{a.ndf}, batch {a.batch}', flush=True)
        t0 = time.perf_counter()
        with torch.inference_mode(False):
            res = compare_gan_variants(paths, labels, a.out, feats, variants={n: GAN_VARIANTS[n] for n in names},
                                       max_seconds=a.budget_s, epochs=a.epochs, n_per_cluster=a.n_per_cluster,
                                       height=a.gan_size, width=a.gan_size // 2, feature_size=(fh, fw), seed=a.seed,
                                       device=dev, batch_size=a.batch, ngf=a.ngf, ndf=a.ndf, n_samples=16)
        print(f'total {time.perf_counter() - t0:.0f} s; results in {a.out}/compare.json', flush=True)
    keep = ('consistency', 'kid_own', 'kid_own_se', 'kid_margin', 'precision', 'recall')
    print(json.dumps({v: {str(r['cluster']): {k: r.get(k) for k in keep} for r in res[v]['clusters']} for v in res}))
    return 0


if __name__ == '__main__': sys.exit(main())
