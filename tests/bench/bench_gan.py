"""Benchmark: DCGAN training steps per second, the kit's `train_gan` loop vs a plain PyTorch DCGAN written here.

Both sizes (128x64 and 64x32), batch 64, same architecture and initialisation, same run, rounds interleaved
(one kit epoch, then one plain round from the kit's epoch callback, ...), the first round of each discarded as warm-up,
medians reported. The kit's figure is its own per-epoch loop time (data batching + steps), read from its history.
Also times the kit with channels_last, and with --amp bf16 autocast, at the smaller size; with --stabilisers, each
GAN variant of `slsr_nb.gan.GAN_VARIANTS` (spectral norm, hinge, DiffAugment, EMA, TTUR) at the smaller size, as a
ratio to the plain DCGAN's steps/s in the same run (what a fixed time budget buys each variant).

Run (heavy: run it alone, with nothing else on the machine):
    python tests/bench/bench_gan.py [--steps 3] [--rounds 3] [--amp]
Prints one line per measurement and a final JSON line; exits 1 if a ratio kit/plain is below 0.95.
"""
import argparse, json, statistics, sys, tempfile, time
from pathlib import Path
import torch, torch.nn as nn, torch.nn.functional as F


# ---- a plain PyTorch DCGAN (no kit code): same architecture as slsr_nb.gan ----
class PlainG(nn.Module):
    def __init__(self, h, w, nz=100, ngf=64):
        super().__init__()
        self.h0, self.w0 = h // 16, w // 16
        self.fc = nn.Linear(nz, ngf * 8 * self.h0 * self.w0, bias=False)
        self.bn = nn.BatchNorm2d(ngf * 8)
        self.body = nn.Sequential(
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 3, 4, 2, 1), nn.Tanh())

    def forward(self, z):
        return self.body(F.relu(self.bn(self.fc(z).view(len(z), -1, self.h0, self.w0))))


class PlainD(nn.Module):
    def __init__(self, h, w, ndf=64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, True))
        self.fc = nn.Linear(ndf * 8 * (h // 16) * (w // 16), 1)

    def forward(self, x):
        return self.fc(self.body(x).flatten(1)).squeeze(1)


def plain_init(m):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0, 0.02)
        if m.bias is not None: nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1, 0.02); nn.init.zeros_(m.bias)


class Plain:
    "A textbook DCGAN loop over an in-memory uint8 image tensor."
    def __init__(self, h, w, images, bs):
        torch.manual_seed(0)
        self.G, self.D = PlainG(h, w), PlainD(h, w)
        self.G.apply(plain_init); self.D.apply(plain_init)
        self.og = torch.optim.Adam(self.G.parameters(), 2e-4, betas=(0.5, 0.999))
        self.od = torch.optim.Adam(self.D.parameters(), 2e-4, betas=(0.5, 0.999))
        self.images, self.bs = images, bs
        self.bce = nn.BCEWithLogitsLoss()

    def run(self, steps):
        perm = torch.randperm(len(self.images))
        t0 = time.perf_counter()
        for i in range(steps):
            real = self.images[perm[i * self.bs:(i + 1) * self.bs]].float() / 127.5 - 1
            z = torch.rand(self.bs, 100) * 2 - 1
            fake = self.G(z)
            o_r, o_f = self.D(real), self.D(fake.detach())
            ld = self.bce(o_r, torch.ones_like(o_r)) + self.bce(o_f, torch.zeros_like(o_f))
            self.od.zero_grad(); ld.backward(); self.od.step()
            o = self.D(fake)
            lg = self.bce(o, torch.ones_like(o))
            self.og.zero_grad(); lg.backward(); self.og.step()
            ld.item(), lg.item()
        return steps / (time.perf_counter() - t0)


def kit_rounds(h, w, images, bs, rounds, out, between=None, **kw):
    "Kit steps/s of each epoch of one `train_gan` run (warm after the first); `between()` runs after each epoch."
    from slsr_nb.gan import train_gan
    res = train_gan(images, out, height=h, width=w, epochs=rounds, batch_size=bs, progress=False,
                    device=torch.device('cpu'), callback=(lambda rec: between()) if between else None, **kw)
    return [e['steps_per_s'] for e in res['history']]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--steps', type=int, default=3, help='training steps per round')
    ap.add_argument('--rounds', type=int, default=3, help='timed rounds per implementation (+1 warm-up)')
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--sizes', default='128x64,64x32')
    ap.add_argument('--no-variants', action='store_true', help='skip the channels_last / bf16 timings')
    ap.add_argument('--amp', action='store_true', help='also time bf16 autocast (slow on CPUs without bf16 units)')
    ap.add_argument('--stabilisers', action='store_true', help='also time each GAN_VARIANTS variant against plain DCGAN')
    a = ap.parse_args(argv)
    print(f'torch {torch.__version__}, threads {torch.get_num_threads()}, batch {a.batch}, '
          f'{a.steps} steps x {a.rounds} rounds (+1 warm-up)', flush=True)
    results, ok = {}, True
    for size in a.sizes.split(','):
        h, w = map(int, size.split('x'))
        images = torch.randint(0, 256, (a.batch * a.steps, 3, h, w), dtype=torch.uint8)
        plain = Plain(h, w, images, a.batch)
        p_all = []
        with tempfile.TemporaryDirectory() as d:   # kit epoch, plain round, kit epoch, plain round, ...
            k_all = kit_rounds(h, w, images, a.batch, a.rounds + 1, Path(d)/'kit', between=lambda: p_all.append(plain.run(a.steps)))
        for r, (p, k) in enumerate(zip(p_all, k_all)):
            print(f'  {size} round {r}{" (warm-up)" if r == 0 else ""}: plain {p:.3f} steps/s, kit {k:.3f} steps/s', flush=True)
        p_s, k_s = p_all[1:], k_all[1:]
        pm, km = statistics.median(p_s), statistics.median(k_s)
        ratio = km / pm
        ok &= ratio >= 0.95
        results[size] = dict(plain_steps_per_s=pm, kit_steps_per_s=km, ratio=ratio)
        print(f'{size}: plain {pm:.3f} steps/s, kit {km:.3f} steps/s, ratio kit/plain {ratio:.3f}', flush=True)
    h, w = map(int, a.sizes.split(',')[-1].split('x'))
    images = torch.randint(0, 256, (a.batch * a.steps, 3, h, w), dtype=torch.uint8)
    variants = [] if a.no_variants else [('fp32', {}), ('fp32+channels_last', dict(channels_last=True))]
    if a.amp and not a.no_variants: variants.append(('bf16+channels_last', dict(amp=True, channels_last=True)))
    for name, kw in variants:   # one warm-up epoch, then the median of the timed epochs
        with tempfile.TemporaryDirectory() as d:
            s = statistics.median(kit_rounds(h, w, images, a.batch, a.rounds + 1, Path(d)/'k', **kw)[1:])
        results[f'{h}x{w} kit {name}'] = dict(kit_steps_per_s=s)
        print(f'{h}x{w} kit {name}: {s:.3f} steps/s', flush=True)
    if a.stabilisers:
        from slsr_nb.gan import GAN_VARIANTS
        for name, kw in GAN_VARIANTS.items():
            with tempfile.TemporaryDirectory() as d:
                s = statistics.median(kit_rounds(h, w, images, a.batch, a.rounds + 1, Path(d)/'k', **kw)[1:])
            results[f'{h}x{w} variant {name}'] = dict(kit_steps_per_s=s)
        base = results[f'{h}x{w} variant dcgan']['kit_steps_per_s']
        for name in GAN_VARIANTS:
            r = results[f'{h}x{w} variant {name}']; r['ratio_to_dcgan'] = r['kit_steps_per_s'] / base
            print(f'{h}x{w} variant {name}: {r["kit_steps_per_s"]:.3f} steps/s, {r["ratio_to_dcgan"]:.2f} x dcgan', flush=True)
    print(json.dumps(results))
    return 0 if ok else 1


if __name__ == '__main__': sys.exit(main())
