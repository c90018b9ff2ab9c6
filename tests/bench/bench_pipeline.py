"""Wall time of every pipeline stage for the README's main job (`slsr demo`: the synthetic data set, small sizes, CPU).

Runs the pipeline in-process with nbs/experiments/params/synthetic.yaml into a fresh run folder, then runs it again
to time the all-cached re-run, and prints one line per stage plus the totals (also written as JSON).
Usage: python tests/bench/bench_pipeline.py [--run-dir DIR] [--json OUT] [-p NAME VALUE]...
"""
import argparse, json, os, platform, shutil, sys, tempfile, time
from pathlib import Path
import torch, yaml

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--run-dir', help='run folder (default: a fresh temporary folder)')
    ap.add_argument('--data-root', help='data root (default: the kit default)')
    ap.add_argument('--json', help='write the figures here too')
    ap.add_argument('-p', nargs=2, action='append', default=[], metavar=('NAME', 'VALUE'))
    a = ap.parse_args()
    os.environ.setdefault('MPLBACKEND', 'Agg')
    from slsr_nb.pipeline import run_pipeline
    from slsr_nb.viz import results_table
    params = yaml.safe_load((ROOT/'nbs'/'experiments'/'params'/'synthetic.yaml').read_text())
    params.update({k: yaml.safe_load(v) for k, v in a.p})
    run_dir = Path(a.run_dir or tempfile.mkdtemp(prefix='slsr_bench_'))/'demo'
    if run_dir.exists(): shutil.rmtree(run_dir)
    params['run_dir'] = str(run_dir)
    if a.data_root: params['data_root'] = a.data_root
    t = time.time(); r = run_pipeline(params, log=lambda *m: print(*m, file=sys.stderr, flush=True)); first = time.time() - t
    t = time.time(); r2 = run_pipeline(params, log=lambda *m: None); again = time.time() - t
    print(f'pipeline stages, synthetic demo parameters, {torch.get_num_threads()} torch threads, {platform.processor() or platform.machine()}')
    for name, secs in r['timings']['stages'].items(): print(f'  {name:<20} {secs:8.1f} s')
    print(f'  {"total":<20} {first:8.1f} s   (cached re-run: {again:.2f} s, {len(r2["reused"])} stages reused)')
    print(results_table(r['metrics']))
    out = dict(stages=r['timings']['stages'], total_s=round(first, 2), rerun_s=round(again, 2),
               results=r['metrics']['results'], threads=torch.get_num_threads(), params=params)
    if a.json: Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == '__main__':
    main()
