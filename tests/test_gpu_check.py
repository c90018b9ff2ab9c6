"The GPU check script runs in the test command on the CPU, so that it cannot rot before a GPU is at hand."
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_script_runs_on_the_cpu():
    r = subprocess.run(['bash', str(ROOT/'tests'/'gpu'/'check.sh'), '--device', 'cpu'], capture_output=True, text=True,
                       timeout=1200, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for step in ('train', 'extract', 'gan', 'ddp', 'pipeline'):
        assert f'[gpu-check] {step}: cpu |' in r.stdout, (step, r.stdout)
    assert '[gpu-check] all 5 steps passed on cpu' in r.stdout, r.stdout
