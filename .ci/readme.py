"""Write README.md from nbs/index.ipynb (nbdev_readme needs Quarto, which these machines cannot have).

Markdown cells are copied; code cells become ```python blocks (cells starting with `#| hide` are left out), their
plain-text outputs ```text blocks. `--check` exits 1 when README.md differs from what index.ipynb gives.
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def render(nb_path:Path)->str:
    parts = []
    for c in json.loads(nb_path.read_text())['cells']:
        src = ''.join(c['source']).strip()
        if c['cell_type'] == 'markdown': parts.append(src)
        elif c['cell_type'] == 'code' and src and not src.startswith('#| hide'):
            code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
            if code: parts.append(f'```python\n{code}\n```')
            txt = ''.join(''.join(o.get('text', '')) for o in c.get('outputs', []) if o.get('output_type') == 'stream')
            if txt.strip(): parts.append(f'```text\n{txt.rstrip()}\n```')
    return '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    text, readme = render(ROOT/'nbs'/'index.ipynb'), ROOT/'README.md'
    if '--check' in sys.argv:
        if readme.read_text() != text: sys.exit('README.md is out of date with nbs/index.ipynb: run python .ci/readme.py')
    else: readme.write_text(text)
