"""Benchmark of the synthetic data set: how long the default set takes to write, and how hard it is (Market-1501
single-query rank-1 / mAP of untrained features: raw pixels, a colour histogram, random-init CNNs; optionally a small
CNN trained from scratch for a few epochs). Learnability without a GPU: LDA fitted on the training identities'
colour histograms, scored on the disjoint test identities.
Run: python tests/bench/bench_synthetic.py [--params '{"n_ids": 80}'] [--resnet18] [--train 20]
     [--cnn-size 64x32]"""
import argparse, json, tempfile, time
from pathlib import Path
import numpy as np, torch
from PIL import Image
from slsr_nb.core import seed_everything
from slsr_nb.data.synthetic import make_synthetic
from slsr_nb.eval.metrics import evaluate

MEAN, STD = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]

def load_split(d):
    fs = sorted(Path(d).glob('*.jpg'))
    ids = np.array([(int(f.name.split('_')[0]), int(f.name.split('_')[1][1])) for f in fs])
    return np.stack([np.asarray(Image.open(f).convert('RGB'), np.float32) for f in fs]), ids[:, 0], ids[:, 1]

def score(name, qf, gf, q, g):
    r = evaluate(qf, gf, q[1], g[1], q[2], g[2])
    print(f'{name:34s} rank-1 {100 * r["cmc"][0]:5.1f}%  mAP {100 * r["mAP"]:5.1f}%', flush=True)
    return r

def raw_pixels(a):
    x = torch.nn.functional.interpolate(torch.from_numpy(a).permute(0, 3, 1, 2), size=(32, 16), mode='bilinear').flatten(1).numpy()
    return (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-6)

def colour_hist(a, bins=4):
    h, w = a.shape[1:3]
    c = (a[:, h // 6:h * 6 // 7, w // 4:w * 3 // 4] // (256 // bins)).astype(int)  # centre of the box
    idx = (c[..., 0] * bins * bins + c[..., 1] * bins + c[..., 2]).reshape(len(a), -1)
    x = np.stack([np.bincount(i, minlength=bins ** 3) for i in idx]).astype(np.float32)
    return np.sqrt(x / x.sum(1, keepdims=True))

def small_cnn():
    layers, c = [], 3
    for o in (32, 64, 128, 256):
        layers += [torch.nn.Conv2d(c, o, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(o), torch.nn.ReLU(),
                   torch.nn.Conv2d(o, o, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(o), torch.nn.ReLU()]
        c = o
    return torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())

SIZE = None  # (h, w) the CNNs see; None: the set's own size

def tens(a):
    x = (torch.from_numpy(a).permute(0, 3, 1, 2) / 255 - MEAN) / STD
    return x if SIZE is None else torch.nn.functional.interpolate(x, size=SIZE, mode='bilinear', antialias=True)

def feats(net, a, bs=128):
    net.eval()
    with torch.no_grad(): return np.concatenate([net(tens(a[i:i + bs])).numpy() for i in range(0, len(a), bs)])

def train_small(tr, q, g, epochs, lr=0.05, bs=32):
    seed_everything(0)
    labels = {p: i for i, p in enumerate(sorted(set(tr[1].tolist())))}
    y, X = torch.tensor([labels[p] for p in tr[1].tolist()]), tens(tr[0])
    net = small_cnn(); model = torch.nn.Sequential(net, torch.nn.Linear(256, len(labels)))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for ep in range(epochs):
        model.train(); perm = torch.randperm(len(X)); t, tot = time.perf_counter(), 0.0
        for i in range(0, len(X), bs):
            b = perm[i:i + bs]; xb = X[b].clone()
            flip = torch.rand(len(b)) < 0.5; xb[flip] = xb[flip].flip(3)
            loss = torch.nn.functional.cross_entropy(model(xb), y[b])
            opt.zero_grad(); loss.backward(); opt.step(); tot += loss.item() * len(b)
        sched.step()
        if (ep + 1) % 5 == 0 or ep == epochs - 1:
            print(f'  epoch {ep + 1}: loss {tot / len(X):.3f} ({time.perf_counter() - t:.1f} s/epoch)', flush=True)
            score(f'small CNN trained {ep + 1} epochs', feats(net, q[0]), feats(net, g[0]), q, g)

def main(params:dict, root=None, resnet18=False, train=0):
    root = Path(root or tempfile.mkdtemp(prefix='bench_synthetic_'))
    t, c = time.perf_counter(), time.process_time()
    syn = make_synthetic(root, verbose=False, **params)
    print(f'make_synthetic({params}) -> {syn}: {time.perf_counter() - t:.1f} s wall, {time.process_time() - c:.1f} s CPU')
    print('counts:', json.loads((syn / 'meta.json').read_text())['counts'])
    tr, q, g = (load_split(syn / s) for s in ('bounding_box_train', 'query', 'bounding_box_test'))
    score('raw pixels 32x16 (standardised)', raw_pixels(q[0]), raw_pixels(g[0]), q, g)
    score('colour histogram 4x4x4 (centre)', colour_hist(q[0]), colour_hist(g[0]), q, g)
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    upper_lower = lambda a: np.concatenate([colour_hist(a[:, :a.shape[1] * 3 // 5]), colour_hist(a[:, a.shape[1] * 2 // 5:])], 1)
    f_tr, f_q, f_g = upper_lower(tr[0]), upper_lower(q[0]), upper_lower(g[0])
    score('upper/lower colour histograms', f_q, f_g, q, g)
    lda = LinearDiscriminantAnalysis(n_components=min(60, len(set(tr[1].tolist())) - 1)).fit(f_tr, tr[1])
    score('  + LDA learned on train IDs', lda.transform(f_q), lda.transform(f_g), q, g)
    seed_everything(0); net = small_cnn()
    score('small CNN, random init', feats(net, q[0]), feats(net, g[0]), q, g)
    if resnet18:
        import torchvision
        seed_everything(0); net = torchvision.models.resnet18(weights=None); net.fc = torch.nn.Identity()
        score('ResNet-18, random init', feats(net, q[0]), feats(net, g[0]), q, g)
    if train: train_small(tr, q, g, train)

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--params', default='{}', help='make_synthetic keyword arguments as JSON (default: its defaults)')
    ap.add_argument('--root', default=None, help='where to write the set (default: a new temporary folder)')
    ap.add_argument('--resnet18', action='store_true', help='also score a random-init ResNet-18 (slow on a busy CPU)')
    ap.add_argument('--train', type=int, default=0, help='train a small CNN from scratch for this many epochs')
    ap.add_argument('--cnn-size', default=None, help="HxW the CNNs see, e.g. 64x32 (4x less compute); default: the set's size")
    a = ap.parse_args()
    if a.cnn_size: SIZE = tuple(int(v) for v in a.cnn_size.lower().split('x'))
    main(json.loads(a.params), a.root, a.resnet18, a.train)
