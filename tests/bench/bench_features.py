"""Benchmark: `extract_features` end to end on real Market-1501 images vs the raw forward pass on in-memory tensors.

Same model, same batch size, same input size, same process; the two are measured alternately `--repeats` times and
the medians are compared (the CPU is shared and noisy). End to end = JPEG decode + resize + normalise in DataLoader
workers (once, into the decoded-image cache, unless --no-cache), batching, channels-last conversion, the forward pass
and copying features out. Goal: >= 95% of the raw rate.

Run (heavy: run it alone, with nothing else on the machine):
    python tests/bench/bench_features.py --arch resnet50
Prints one line per measurement and a summary; `--json PATH` also writes the figures.
"""
import argparse, json, statistics, time
from pathlib import Path
import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--arch', default='resnet50')
    ap.add_argument('--height', type=int, default=256)
    ap.add_argument('--width', type=int, default=128)
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--n-images', type=int, default=320, help='real images per end-to-end pass')
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--bf16', action='store_true', help='bf16 autocast (fast on CPUs with AMX; very slow on AVX2-only CPUs)')
    ap.add_argument('--threads', type=int, default=None, help='torch threads of the main process (default: torch\'s)')
    ap.add_argument('--json', default=None)
    ap.add_argument('--no-cache', action='store_true', help='decode every image on every pass (the decoded-image cache off)')
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    import sys; sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_train import cpu_name
    print(f'CPU: {cpu_name()} (shared with other work: figures are noisy, the ratio is what counts)')

    from slsr_nb.core import real_data_root, MARKET_MISSING, get_device, autocast
    if real_data_root() is None:
        print(MARKET_MISSING); return None
    from slsr_nb.data.datasets import load_dataset, build_transforms, build_loader
    from slsr_nb.models import build_model
    from slsr_nb.features import extract_features

    dev = get_device()
    amp = a.bf16 or dev.type == 'cuda'
    data = load_dataset('market1501', verbose=False)
    recs = data.gallery[:a.n_images]
    loader = build_loader(recs, build_transforms(a.height, a.width, train=False), batch_size=a.batch, train=False,
                          num_workers=a.workers, cache=False if a.no_cache else None)
    model = build_model(a.arch, data.n_train_pids).eval().to(dev).to(memory_format=torch.channels_last)
    x = torch.randn(a.batch, 3, a.height, a.width, device=dev).contiguous(memory_format=torch.channels_last)
    n_batches = (len(recs) + a.batch - 1) // a.batch

    def raw():
        with torch.inference_mode(), autocast(dev, amp):
            model.features(x)  # warm-up batch, not timed
            if dev.type == 'cuda': torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(n_batches): f = model.features(x).float().cpu()
            if dev.type == 'cuda': torch.cuda.synchronize()
        return n_batches * a.batch / (time.perf_counter() - t)

    def e2e():
        t = time.perf_counter()
        out = extract_features(model, loader, amp=amp, progress=False, device=dev)
        assert out['feats'].shape == (len(recs), model.feat_dim)
        return len(recs) / (time.perf_counter() - t)

    e2e()  # warm-up: page cache, allocator, oneDNN kernels
    rr, ee = [], []
    for i in range(a.repeats):
        rr.append(raw()); ee.append(e2e())
        print(f'repeat {i + 1}: raw forward {rr[-1]:.1f} img/s, extract_features end to end {ee[-1]:.1f} img/s')
    res = dict(arch=a.arch, size=f'{a.height}x{a.width}', batch=a.batch, workers=a.workers, amp=amp, device=str(dev),
               threads=torch.get_num_threads(), n_images=len(recs), raw_img_s=statistics.median(rr),
               e2e_img_s=statistics.median(ee), raw_all=rr, e2e_all=ee)
    res['ratio'] = res['e2e_img_s'] / res['raw_img_s']
    print(f"{a.arch} {res['size']} batch {a.batch} {'bf16' if amp else 'fp32'} on {dev} ({res['threads']} threads), "
          f"{a.workers} workers: raw {res['raw_img_s']:.1f} img/s, end to end {res['e2e_img_s']:.1f} img/s "
          f"(median of {a.repeats}) = {100 * res['ratio']:.0f}% of raw (goal >= 95%; image cache {'off' if a.no_cache else 'on'})")
    if a.json: Path(a.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == '__main__':
    main()
