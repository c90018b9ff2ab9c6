"Install-level checks: the package imports, its version matches settings.ini, and every pin lives in settings.ini."
from configparser import ConfigParser
from pathlib import Path
import slsr_nb

ROOT = Path(__file__).resolve().parents[1]

def _cfg():
    c = ConfigParser(delimiters=['=']); c.read(ROOT/'settings.ini'); return c['DEFAULT']

def test_version_matches_settings():
    assert slsr_nb.__version__ == _cfg()['version']

def test_torch_pinned_exactly():
    reqs = _cfg()['requirements'].split()
    assert any(r.startswith('torch==') for r in reqs) and any(r.startswith('torchvision==') for r in reqs)

def test_pins_only_in_settings_ini():
    "No second requirements file that could drift from settings.ini."
    assert not list(ROOT.glob('requirements*.txt')) and not (ROOT/'pyproject.toml').exists()


def test_docs_and_benches_name_no_path_or_lock_of_this_workplace():
    "Every command in the notebooks, benches and README works on a user's machine: no /work/... path, no lock file."
    root = Path(__file__).resolve().parents[1]
    files = [*root.glob('nbs/**/*.ipynb'), *root.glob('tests/bench/*.py'), *root.glob('tests/gpu/*'), root/'README.md']
    bad = [f'{f.relative_to(root)}: {w}' for f in files for w in ('/work/', 'cpu.lock', 'flock ') if w in f.read_text()]
    assert not bad, bad
