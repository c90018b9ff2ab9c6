"""torch.distributed on the CPU: 2 gloo processes launched by torchrun against 1 process, same work.

tests/dist_worker.py trains, extracts and runs the GAN stage on tiny data; run once alone and once under
`torchrun --nproc_per_node 2`, both must write the same weights, features and manifest. A tiny pipeline then runs
through the `slsr` command line under torchrun. About a minute on 2 cores.
"""
import json, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TORCHRUN = shutil.which('torchrun', path=str(BIN)) or shutil.which('torchrun')
SLSR = shutil.which('slsr', path=str(BIN)) or shutil.which('slsr')
# fp32 everywhere: 'auto' times bf16 in every process, and on a CPU with native bf16 two ranks (or the one process)
# can choose differently, which makes runs that must be equal differ by bf16 rounding (seen: weights 2.4e-5 apart)
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg', 'SLSR_DEVICE': 'cpu', 'SLSR_AMP': 'fp32'}


def _torchrun(*args, nproc=2, timeout=600, cwd=None):
    assert TORCHRUN, 'torchrun is not installed (it comes with torch)'
    r = subprocess.run([TORCHRUN, '--standalone', f'--nproc_per_node={nproc}', *map(str, args)], capture_output=True,
                       text=True, timeout=timeout, env=ENV, cwd=cwd)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "The worker's output folders: one process, and two processes under torchrun."
    base = tmp_path_factory.mktemp('dist')
    r = subprocess.run([sys.executable, ROOT/'tests'/'dist_worker.py', base/'one'], capture_output=True, text=True,
                       timeout=600, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    r = _torchrun(ROOT/'tests'/'dist_worker.py', base/'two')
    assert 'rank 0/2 done' in r.stdout and 'rank 1/2 done' in r.stdout, r.stdout
    return base/'one', base/'two'


def _weights(run):
    return torch.load(run/'last.pt', map_location='cpu', weights_only=True)['model']


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_ddp_step_equals_single_process_step(runs):
    one, two = runs
    a, b = _weights(one/'train_step'), _weights(two/'train_step')
    assert _max_diff(a, b) < 1e-6
    from dist_worker_model import fresh_weights
    assert _max_diff(a, fresh_weights()) > 1e-4, 'the step must have changed the weights'


def test_ddp_logs_the_global_batch_once(runs):
    one, two = runs
    la = [json.loads(l) for l in (one/'train_straight'/'log.jsonl').read_text().splitlines()]
    lb = [json.loads(l) for l in (two/'train_straight'/'log.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in lb] == [1, 2], 'rank 0 alone writes the log'
    assert [r['images'] for r in lb] == [r['images'] for r in la] == [32, 32]
    assert np.allclose([r['loss'] for r in lb], [r['loss'] for r in la], atol=1e-5)
    assert torch.load(two/'train_straight'/'last.pt', weights_only=True)['hparams']['world_size'] == 2


def test_validation_under_ddp(runs):
    "val_fn (whose extraction splits over ranks) runs on every rank and rank 0 logs what one process would."
    one, two = runs
    va, vb = (json.loads((r/'train_val'/'log.jsonl').read_text().splitlines()[0]) for r in runs)
    assert 'mAP' in vb and 0 <= vb['rank1'] <= 1
    assert abs(va['mAP'] - vb['mAP']) < 1e-6 and va['rank1'] == vb['rank1']


def test_resume_under_torchrun_equals_an_uninterrupted_run(runs):
    one, two = runs
    assert _max_diff(_weights(two/'train_resumed'), _weights(two/'train_straight')) == 0
    assert _max_diff(_weights(two/'train_straight'), _weights(one/'train_straight')) < 1e-6
    ck = torch.load(two/'train_resumed'/'last.pt', weights_only=True)
    assert len(ck['rng_ranks']) == 2, 'every rank keeps its own random streams'


def test_identity_sampler_sharded_by_batches(runs):
    "Under 2 ranks, rank r trains on batches r, r+2, ... of the one-process identity-balanced epoch."
    one, two = runs
    (single,) = json.loads((one/'identity'/'batches.json').read_text())
    r0, r1 = json.loads((two/'identity'/'batches.json').read_text())
    assert len(r0) == len(r1) == len(single) // 2 > 0
    assert [b for pair in zip(r0, r1) for b in pair] == single[:2 * len(r0)]
    assert all(len({n.split('_')[0] for n in b}) == 2 for b in single), '2 identities x 2 images per batch'


def test_distributed_extraction_equals_single_process(runs):
    one, two = runs
    fa, fb = np.load(one/'extract'/'feats.npy'), np.load(two/'extract'/'feats.npy')
    assert fa.shape == fb.shape == (11, 8)
    assert np.array_equal(fa, fb)
    pa = json.loads((one/'extract'/'paths.json').read_text())
    assert pa == json.loads((two/'extract'/'paths.json').read_text())
    assert [int(Path(x).stem.split('_')[2]) for x in pa] == list(range(11)), 'the loader order is kept'


def test_gan_stage_two_ranks_same_manifest_and_images(runs):
    one, two = runs
    ma, mb = (one/'generated'/'manifest.csv').read_text(), (two/'generated'/'manifest.csv').read_text()
    assert ma == mb and len(ma.splitlines()) == 11
    assert (one/'generated_hashes.json').read_text() == (two/'generated_hashes.json').read_text()
    ga, gb = (json.loads((r/'gans'/'gans.json').read_text()) for r in runs)
    assert sorted(gb['clusters']) == ['0', '1', '2']
    assert {c: v['n_images'] for c, v in ga['clusters'].items()} == {c: v['n_images'] for c, v in gb['clusters'].items()}
    assert not list((two/'generated').glob('manifest.rank*.csv')), 'per-rank manifests are merged and removed'


TINY_DATA = dict(n_ids=8, n_test_ids=6, n_cams=3, n_distractors=10, n_junk=5, height=64, width=32)


def test_pipeline_command_under_torchrun(tmp_path):
    "The `slsr run` command line, unchanged, under torchrun with 2 CPU processes: every stage, one run folder."
    p = dict(dataset='synthetic', data_root=str(tmp_path/'data'), protocol=TINY_DATA, backbone='resnet18', weights=None,
             height=64, width=32, batch_size=8, epochs=1, k=2, gan_size=32, gan_epochs=1, gan_batch_size=8,
             n_generated=16, smoothing=['slsr'], finetune_epochs=1, rerank=False, seed=0, noise_layer=True, amp=False)
    (tmp_path/'data').mkdir(); (tmp_path/'p.yaml').write_text(yaml.safe_dump(p))
    assert SLSR, 'the slsr console script is not installed (pip install -e .)'
    r = _torchrun('--no-python', SLSR, 'run', 'slsr_pipeline', '-f', tmp_path/'p.yaml', '--run-dir', tmp_path/'run',
                  cwd=tmp_path)
    assert 'in-process on every rank' in r.stderr
    m = json.loads((tmp_path/'run'/'metrics.json').read_text())
    assert set(m['results']) == {'baseline', 'slsr'} and 0 <= m['results']['slsr']['rank1'] <= 100
    assert m['clusters']['k'] == 2
    man = next((tmp_path/'run'/'stages').glob('generate-*'))/'manifest.csv'
    assert len(man.read_text().splitlines()) == 17
    ft = json.loads(next((tmp_path/'run'/'stages').glob('finetune-slsr-*')).joinpath('log.jsonl').read_text().splitlines()[0])
    assert ft['images'] > 0
