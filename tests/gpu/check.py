"""The GPU check (see check.sh): each step prints `[gpu-check] <step>: <device> ... <speed>` and the run ends with
`[gpu-check] all N steps passed on <device>`; any failure exits non-zero with the step named."""
import argparse, os, socket, subprocess, sys, tempfile, time
from pathlib import Path
import torch
from slsr_nb.core import get_device
from slsr_nb.precision import machine_info
from slsr_nb.models import build_model
from slsr_nb.train import train_model, load_checkpoint
from slsr_nb.features import extract_features
from slsr_nb.gan import build_gan, gan_step, sample_noise
from slsr_nb.testing import person_images

ROOT = Path(__file__).resolve().parents[2]


def say(step, dev, what):
    print(f'[gpu-check] {step}: {dev} | {what}', flush=True)


def _sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)


def _loader(x, pids, bs):
    items = [{'img': x[i], 'pid': int(pids[i]), 'camid': i % 2, 'path': f'im{i}.jpg', 'cluster': -1} for i in range(len(x))]
    return torch.utils.data.DataLoader(items, batch_size=bs, shuffle=True, drop_last=True,
                                       generator=torch.Generator().manual_seed(0), pin_memory=torch.cuda.is_available())


def check_train(dev, out):
    "Two epochs of a ResNet-18 (channels-last, the stage's precision), then a resume from the checkpoint."
    x = person_images(64, 128, 64); pids = torch.arange(64) % 8
    torch.manual_seed(0); m = build_model('resnet18', 8)
    t = time.perf_counter()
    log = train_model(m, _loader(x, pids, 16), out/'train', epochs=1, device=dev, progress=False)
    _sync(dev); s = time.perf_counter() - t
    assert next(m.parameters()).device.type == dev.type, 'the model did not train on the device'
    log = train_model(m, _loader(x, pids, 16), out/'train', epochs=2, device=dev, progress=False)  # resumes after epoch 1
    st = load_checkpoint(out/'train'/'last.pt')
    assert st['epoch'] == 2 and st['rng']['torch'].device.type == 'cpu'
    prec = st['hparams']['precision']
    say('train', dev, f"resnet18 128x64, channels-last, {prec['dtype']} ({prec['reason']}); {64 / s:.1f} img/s incl. "
        f"start-up; resumed from the checkpoint: epoch {st['epoch']}, loss {log[-1]['loss']:.3f}")
    return m


def check_extract(dev, m):
    x = person_images(128, 128, 64)
    dl = [{'img': x[i:i + 64], 'path': [f'im{j}' for j in range(i, i + 64)]} for i in (0, 64)]
    extract_features(m, dl[:1], device=dev, progress=False)  # warm-up
    t = time.perf_counter(); f = extract_features(m, dl, device=dev, progress=False); _sync(dev)
    s = time.perf_counter() - t
    assert f['feats'].shape == (128, 512) and torch.isfinite(torch.from_numpy(f['feats'])).all()
    say('extract', dev, f"128 images -> {f['feats'].shape[1]}-d features, {f['precision']['dtype']}; {128 / s:.1f} img/s")


def check_gan(dev):
    G, D = build_gan(64, 32, ngf=32, ndf=32, device=dev)
    og = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999)); od = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    real = (person_images(32, 64, 32) / 3).clamp(-1, 1).to(dev)
    g = torch.Generator().manual_seed(0)
    gan_step(G, D, og, od, real, sample_noise(32, G.nz, g).to(dev), amp=dev.type == 'cuda')
    t = time.perf_counter(); n = 5
    for _ in range(n): ld, lg = gan_step(G, D, og, od, real, sample_noise(32, G.nz, g).to(dev), amp=dev.type == 'cuda')
    _sync(dev); s = time.perf_counter() - t
    assert torch.isfinite(ld) and torch.isfinite(lg) and ld.device.type == dev.type
    say('gan', dev, f'DCGAN 64x32 batch 32: {n / s:.2f} steps/s, loss_d {ld.item():.3f}, loss_g {lg.item():.3f}')


def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def check_ddp(dev):
    import torch.distributed as dist
    backend = 'nccl' if dev.type == 'cuda' else 'gloo'
    saved = {k: os.environ.get(k) for k in ('MASTER_ADDR', 'MASTER_PORT')}
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(_free_port()))
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        m = build_model('resnet18', 4).to(dev)
        net = torch.nn.parallel.DistributedDataParallel(m, device_ids=[dev.index] if dev.type == 'cuda' else None)
        opt = torch.optim.SGD(net.parameters(), 0.01)
        x = person_images(8, 64, 32).to(dev); y = (torch.arange(8) % 4).to(dev)
        loss = torch.nn.functional.cross_entropy(net(x), y); opt.zero_grad(); loss.backward(); opt.step()
        assert torch.isfinite(loss)
        say('ddp', dev, f'1-process DistributedDataParallel step with {backend}: loss {loss.item():.3f}')
    finally:
        dist.destroy_process_group()
        for k, v in saved.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v


def check_pipeline(dev, out):
    "The tiny pipeline through the `slsr` command, on the device."
    slsr = Path(sys.executable).parent/'slsr'
    (out/'data').mkdir(parents=True, exist_ok=True)
    params = dict(epochs=1, gan_epochs=1, finetune_epochs=1, n_generated=16, height=32, width=16, gan_size=32,
                  batch_size=8, gan_batch_size=8, k_min=2, k_max=3)
    args = [str(slsr), 'run', 'slsr_pipeline', '-f', 'synthetic', '--data-root', str(out/'data'), '--run-dir', str(out/'run'),
            '-p', 'device', str(dev), '-p', 'smoothing', '[slsr]', '-p', 'protocol', '{n_ids: 8, n_test_ids: 6, n_cams: 3, n_distractors: 10, n_junk: 5, height: 64, width: 32}']
    for k, v in params.items(): args += ['-p', k, str(v)]
    t = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True, cwd=out, timeout=600)
    assert r.returncode == 0, f'slsr run failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    assert (out/'run'/'metrics.json').exists(), 'the tiny pipeline wrote no metrics.json'
    say('pipeline', dev, f'tiny slsr_pipeline (synthetic, every stage) in {time.perf_counter() - t:.0f} s -> {out/"run"}')


def main(argv=None):
    ap = argparse.ArgumentParser(description='The GPU check (tests/gpu/check.sh).')
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--skip-pipeline', action='store_true')
    ap.add_argument('--out', default=None, help='folder for the runs (default: a temporary folder)')
    a = ap.parse_args(argv)
    dev = get_device(a.device)
    info = machine_info()
    print(f"[gpu-check] machine: {info.get('gpu', 'no GPU')} | CPU {info['cpu']} | torch {info['torch']} | device {dev}", flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.out or tmp)
        m = check_train(dev, out)
        steps = [('extract', lambda: check_extract(dev, m)), ('gan', lambda: check_gan(dev)), ('ddp', lambda: check_ddp(dev))]
        if not a.skip_pipeline: steps.append(('pipeline', lambda: check_pipeline(dev, out)))
        for _, fn in steps: fn()
    print(f'[gpu-check] all {1 + len(steps)} steps passed on {dev} in {time.perf_counter() - t0:.0f} s', flush=True)


if __name__ == '__main__':
    main()
