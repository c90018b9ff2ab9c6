"""Benchmark: training-step and extraction images/s in fp32, bf16 and `amp='auto'`, for ResNet50 at 256x128 and
MobileNetV2 at 128x64, measured in one run as ratios to fp32 (medians of `--repeats`), with the CPU model name.

`auto` is what the kit's stages do: `slsr_nb.precision.choose_precision` on a probe of the model (fp32 without timing
where bf16 is emulated; a short fp32/bf16 timing and an agreement check where it is native). Its row shows what it
picked, how long the decision took, and the speed of the picked precision.

On CPUs without native bf16 (no amx_bf16/avx512_bf16 flag) bf16 is emulated and 6-20x slower: there `--batch 8`
keeps the bf16 rows to a few minutes. Run it alone (nothing else on the machine):
    python tests/bench/bench_precision.py [--models resnet50 mobilenet_v2] [--batch 16] [--repeats 3] [--json OUT]
"""
import argparse, json, time, statistics
import torch
from slsr_nb.models import build_model
from slsr_nb.precision import machine_info, interleaved_medians, choose_precision, train_probe, forward_probe, rel_error
from slsr_nb.testing import person_images

SIZES = {'resnet50': (256, 128), 'mobilenet_v2': (128, 64), 'resnet18': (128, 64)}


def _train_step(model, x, y, opt, amp):
    def step():
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return step


def _forward(model, x, amp):
    def fwd():
        with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp): model.features(x)
    return fwd


def bench_model(arch, batch, repeats):
    h, w = SIZES[arch]
    torch.manual_seed(0)
    model = build_model(arch, 751).to(memory_format=torch.channels_last)
    x = person_images(batch, h, w).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 751, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    rows = {}
    for kind in ('train', 'extract'):
        model.train(kind == 'train')
        t0 = time.perf_counter()
        probe = train_probe(model, x, torch.device('cpu')) if kind == 'train' else forward_probe(
            model, x, torch.device('cpu'), embed=lambda m, x: m.features(x))
        auto = choose_precision('auto', torch.device('cpu'), probe=probe)
        decide_s = time.perf_counter() - t0
        fn = (lambda amp: _train_step(model, x, y, opt, amp)) if kind == 'train' else (lambda amp: _forward(model, x, amp))
        t32, t16 = interleaved_medians([fn(False), fn(True)], reps=repeats)   # in turns: noise hits both alike
        rows[kind] = dict(fp32=batch / t32, bf16=batch / t16, auto=batch / (t16 if auto.amp else t32),
                          auto_pick=auto.dtype, auto_reason=auto.reason, decide_s=round(decide_s, 2))
        print(f"{arch} {h}x{w} {kind:7s}: fp32 {rows[kind]['fp32']:7.1f} img/s | bf16 {rows[kind]['bf16']:7.1f} img/s "
              f"({rows[kind]['bf16'] / rows[kind]['fp32']:.2f}x) | auto -> {auto.dtype} {rows[kind]['auto']:7.1f} img/s "
              f"({rows[kind]['auto'] / rows[kind]['fp32']:.2f}x; decided in {decide_s:.1f} s: {auto.reason})", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', nargs='+', default=['resnet50', 'mobilenet_v2'], choices=sorted(SIZES))
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--threads', type=int, default=None)
    ap.add_argument('--json', default=None)
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    info = machine_info()
    print(f"machine: {info['cpu']} | {info['cores']} cores | native bf16: {info['native_bf16']} {info['flags']} | "
          f"torch {info['torch']}, {torch.get_num_threads()} threads | batch {a.batch}, medians of {a.repeats}")
    res = dict(machine=info, batch=a.batch, repeats=a.repeats, models={m: bench_model(m, a.batch, a.repeats) for m in a.models})
    if a.json:
        with open(a.json, 'w') as fh: json.dump(res, fh, indent=2)
    return res


if __name__ == '__main__':
    main()
