"""Benchmark: end-to-end training images/s against a plain loop over the same batches already in memory (issue 16).

Same model (ResNet18), input size, batch size, optimizer, precision (fp32) and process. End to end = the kit's
`train_model` over the kit's loader (decoded-image cache, uint8 augmentation, DataLoader workers, collation,
labels, the loss); plain = forward, loss, backward and step over tensors collected beforehand from the same loader.
Measured for the baseline (real images, cross-entropy) and for the SLSR fine-tuning (real + generated images in a
fixed ratio, the sparse label-smoothing loss), with 0 and 2 loader workers. The two loops alternate `--repeats`
times and the ratio of the medians is printed (goal >= 0.95). The data is the kit's synthetic set; the generated
images are stand-ins (training images saved as PNG, as the GAN stage saves its output).

The default input is 128x64, the size at which issue 16 measured the kit's ResNet18 baseline (a plain fp32 loop:
83 img/s on a 2-core Xeon). The loader's own time per batch (the same batches drawn with no training) is printed
beside the ratios: it is what end to end adds to the plain loop with 0 workers. With workers, the loader runs in
other processes, which on a machine with no spare core take their time from the training threads.

Run it alone:  python tests/bench/bench_train.py [--steps 20] [--repeats 3] [--size 128 64] [--model resnet18]
The ratios are measured in one run, each the ratio of medians over --repeats alternating runs."""
import argparse, os, platform, statistics, sys, tempfile, time
from pathlib import Path
import torch
from PIL import Image

def cpu_name():
    for line in Path('/proc/cpuinfo').read_text().splitlines() if Path('/proc/cpuinfo').exists() else []:
        if line.startswith('model name'): return line.split(':', 1)[1].strip()
    return platform.processor() or 'unknown CPU'

def fake_generated(data, folder, n=200, k=3, size=(64, 32)):
    "Training images saved as PNG stand-ins for GAN output, spread over k clusters; identity sets S_c."
    folder.mkdir(parents=True, exist_ok=True); recs = []
    for i, r in enumerate(data.train[:n]):
        p = folder/f'gen_{i:05d}.png'
        if not p.exists(): Image.open(r[0]).convert('RGB').resize(size[::-1]).save(p)
        recs.append((str(p), -1, -1, i % k))
    K = data.n_train_pids
    return recs, [list(range(c, K, k)) for c in range(k)]

def plain_rate(model, batches, loss_fn, lr=0.01):
    "Images/s of forward + loss + backward + SGD step over batches in memory (channels-last, fp32)."
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train(); t = time.perf_counter(); n = 0
    for b in batches:
        x = b['img'].contiguous(memory_format=torch.channels_last)
        loss = loss_fn(model(x), b)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); n += len(x)
    return n / (time.perf_counter() - t)

def loader_ms(loader, steps, repeats):
    "Median milliseconds per batch of drawing `steps` batches from `loader` (no training)."
    ts = []
    for _ in range(repeats):
        it = iter(loader); next(it); t = time.perf_counter()
        for _ in range(steps - 1): next(it)
        ts.append(1000 * (time.perf_counter() - t) / (steps - 1)); del it
    return statistics.median(ts)

def main(steps=20, repeats=3, size=(128, 64), batch=32, arch='resnet18'):
    from slsr_nb.core import default_data_root, seed_everything
    from slsr_nb.data.datasets import load_dataset, build_transforms
    from slsr_nb.slsr import build_mixed_loader
    from slsr_nb.losses import SmoothingLoss
    from slsr_nb.models import build_model
    from slsr_nb.train import train_model
    print(f'CPU: {cpu_name()} ({os.cpu_count()} logical cores, shared with other work); torch {torch.__version__}, '
          f'{torch.get_num_threads()} torch thread(s); {arch} at {size[0]}x{size[1]}, batch {batch}, fp32, {steps} steps')
    data = load_dataset('synthetic', default_data_root(), verbose=False)
    tmp = Path(tempfile.mkdtemp(prefix='bench_train_'))
    gen, S = fake_generated(data, tmp/'gen', size=size)
    K = data.n_train_pids
    tf = build_transforms(*size, train=True, random_erase=0.5)
    for method in ('baseline', 'slsr'):
        crit = SmoothingLoss(K, 'onehot' if method == 'baseline' else 'slsr', S if method == 'slsr' else None)
        for workers in (0, 2):
            loader = build_mixed_loader(data.train, gen if method == 'slsr' else [], tf, batch,
                                        0.25 if method == 'slsr' else 0, 0, workers)
            it = iter(loader); batches = [next(it) for _ in range(steps)]; del it
            lm = loader_ms(loader, steps, repeats)
            e2e, plain = [], []
            for r in range(repeats):
                seed_everything(r); model = build_model(arch, K, weights=None)
                with tempfile.TemporaryDirectory() as d:
                    log = train_model(model, loader, d, epochs=1, loss_fn=crit, max_steps=steps, progress=False,
                                      device='cpu', amp=False)
                e2e.append(log[0]['images'] / log[0]['time_s'])
                seed_everything(r); model = build_model(arch, K, weights=None).to(memory_format=torch.channels_last)
                plain.append(plain_rate(model, batches, crit))
            a, b = statistics.median(e2e), statistics.median(plain)
            print(f'{method:8s} workers={workers}: end to end {a:.1f} img/s (runs {", ".join(f"{x:.1f}" for x in e2e)}), '
                  f'plain loop {b:.1f} img/s (runs {", ".join(f"{x:.1f}" for x in plain)}); ratio {a / b:.2f} (goal >= 0.95); '
                  f'the loader alone {lm:.1f} ms a batch = {lm / (1000 * batch / b):.1%} of a plain step', flush=True)

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--steps', type=int, default=20); p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--size', type=int, nargs=2, default=(128, 64)); p.add_argument('--batch', type=int, default=32)
    p.add_argument('--model', default='resnet18', help='a key of slsr_nb.models.ARCHS')
    a = p.parse_args(); main(a.steps, a.repeats, tuple(a.size), a.batch, a.model)
