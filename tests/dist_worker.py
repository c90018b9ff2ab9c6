"""Work run both as one process and under `torchrun --nproc_per_node 2` by tests/test_distributed.py.

Usage: python dist_worker.py OUT_DIR   (or under torchrun). Writes OUT_DIR/{train,extract,gans}/... from rank 0; the
test compares what one process and two processes wrote. Everything is tiny and runs on the CPU with gloo.
"""
import sys, json, hashlib
from pathlib import Path
import numpy as np, torch
from PIL import Image

torch.set_num_threads(1)
from slsr_nb.distributed import init_distributed, dist_info, barrier
from slsr_nb.data.datasets import build_loader, build_transforms
from slsr_nb.train import train_model
from slsr_nb.features import extract_features
from slsr_nb.gan import train_cluster_gans, generate
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dist_worker_model import NoNormNet

out = Path(sys.argv[1])
info, dev = init_distributed()


def images(folder, n, n_ids, size=(16, 8)):
    "n small PNGs whose colour depends on the identity (written by rank 0 only)."
    folder.mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n):
        pid, cam = i % n_ids, (i // n_ids) % 2; p = folder/f'{pid:04d}_c{cam + 1}s1_{i:06d}_00.png'
        if info.is_main and not p.exists():
            rng = np.random.default_rng(i)
            a = (np.clip(rng.normal(40 + 50 * pid, 30, (size[0], size[1], 3)), 0, 255)).astype(np.uint8)
            Image.fromarray(a).save(p)
        recs.append((str(p), pid, cam))
    barrier()
    return recs


data = out.parent/'images'
recs = images(data/'train', 32, 4)
tf = build_transforms(16, 8, train=False)  # deterministic: ranks and the single process see the same pixels
W = info.world_size

# 1. one training step: one process on batch 8 == two processes on 4 + 4 (the same 8 images: the sharded sampler
#    hands rank r the r-th batch of 4 of the same shuffled order)
model = NoNormNet()
train_model(model, build_loader(recs, tf, batch_size=8 // W, seed=3), out/'train_step', epochs=1, max_steps=1,
            device=dev, progress=False, channels_last=False)
# 2. two epochs stopped after one and resumed (checkpoint, per-rank random streams) vs two uninterrupted epochs
for name, stops in (('train_resumed', (1, 2)), ('train_straight', (2,))):
    model = NoNormNet()
    for e in stops:
        train_model(model, build_loader(recs, tf, batch_size=8 // W, seed=5), out/name, epochs=e, device=dev,
                    progress=False, channels_last=False, resume=True)

# 2a. validation every epoch (extraction split over ranks inside val_fn, scored on every rank, logged by rank 0)
from slsr_nb.train import make_val_fn
ev_q, ev_g = (build_loader(r, tf, batch_size=4, train=False) for r in (recs[:8], recs[8:]))
train_model(NoNormNet(), build_loader(recs, tf, batch_size=8 // W, seed=5), out/'train_val', epochs=1, device=dev,
            progress=False, channels_last=False, val_fn=make_val_fn(ev_q, ev_g, device=dev, channels_last=False))

# 2b. the identity-balanced sampler, sharded: each rank's batches are batches of the one-process epoch
from slsr_nb.distributed import all_gather_objects
idl = build_loader(recs, tf, batch_size=4, sampler='identity', num_instances=2, seed=1)
idl.sampler.set_epoch(1) if hasattr(idl.sampler, 'set_epoch') else setattr(idl.sampler, 'epoch', 1)
mine = [[Path(p).name for p in b['path']] for b in idl]
if info.is_main:
    (out/'identity').mkdir(parents=True, exist_ok=True)
    (out/'identity'/'batches.json').write_text(json.dumps(all_gather_objects(mine)))
else: all_gather_objects(mine)

# 3. extraction of 11 images (uneven shards) in the loader's order
ev = build_loader(recs[:11], tf, batch_size=3, train=False)
f = extract_features(NoNormNet(), ev, device=dev, progress=False, channels_last=False)
if info.is_main:
    (out/'extract').mkdir(parents=True, exist_ok=True)
    np.save(out/'extract'/'feats.npy', f['feats'])
    (out/'extract'/'paths.json').write_text(json.dumps(f['paths']))

# 4. GANs of three clusters (dealt to ranks) and 10 generated images (merged manifest)
grecs = images(data/'gan', 13, 13, size=(32, 16))
labels = [0] * 6 + [1] * 4 + [2] * 3
train_cluster_gans([r[0] for r in grecs], labels, out/'gans', height=32, width=16, epochs=1, batch_size=3,
                   ngf=8, ndf=8, nz=8, device=dev, progress=False)
man = generate(out/'gans', 10, out/'generated', resize_to=(16, 8), device=dev, progress=False)
if info.is_main:
    h = {str(p.relative_to(out/'generated')): hashlib.sha256(p.read_bytes()).hexdigest()
         for p in sorted((out/'generated'/'images').rglob('*.png'))}
    (out/'generated_hashes.json').write_text(json.dumps(h, indent=1))
print(f'rank {info.rank}/{W} done', flush=True)
