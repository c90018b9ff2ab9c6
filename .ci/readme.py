"""Write README.md from nbs/index.ipynb (nbdev_readme needs Quarto, which these machines cannot have).

Markdown cells are copied; code cells become ```python blocks, their plain-text outputs ```text blocks. Cells flagged
`#| hide` or `#| include: false` are left out, `#| echo: false` ones lose their code. A cell flagged
`#| output: asis` (Quarto's option: what the cell prints is Markdown) is run here, in nbs/, and what it prints is
pasted: that is how the results tables come from the results store (nbs/experiments/results/, see nbs/results.ipynb),
never typed by hand. `--check` exits 1 when README.md differs from what index.ipynb and the store give.
"""
import contextlib, io, json, os, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def directives(src:str)->dict:
    "The leading `#| key: value` / `#| flag` lines of a code cell."
    d = {}
    for line in src.splitlines():
        m = re.match(r'^\s*#\|\s*(.*)$', line)
        if not m: break
        k, _, v = m.group(1).partition(':')
        d[k.strip()] = v.strip()
    return d

def run_asis(code:str, nbs:Path)->str:
    "Run a cell's code in nbs/ (as the notebook would) and return what it printed."
    out, cwd = io.StringIO(), os.getcwd()
    sys.path.insert(0, str(ROOT))
    try:
        os.chdir(nbs)
        with contextlib.redirect_stdout(out): exec(compile(code, 'index.ipynb (output: asis cell)', 'exec'), {'__name__': 'readme'})
    finally:
        os.chdir(cwd); sys.path.remove(str(ROOT))
    return out.getvalue().strip()

def nb_links(md:str)->str:
    "Links to notebooks (`[Results](results.ipynb)`, a docs page on the site) point into nbs/ from the README."
    return re.sub(r'\]\((?!https?:|/|#)([^)\s]+\.ipynb(?:#[^)\s]*)?)\)', r'](nbs/\1)', md)

def render(nb_path:Path)->str:
    parts = []
    for c in json.loads(nb_path.read_text())['cells']:
        src = ''.join(c['source']).strip()
        if c['cell_type'] == 'markdown': parts.append(nb_links(src)); continue
        if c['cell_type'] != 'code' or not src: continue
        d = directives(src)
        if 'hide' in d or d.get('include') == 'false': continue
        code = '\n'.join(l for l in src.splitlines() if not l.lstrip().startswith('#|')).strip()
        if d.get('output') == 'asis':
            parts.append(run_asis(code, nb_path.parent)); continue
        if d.get('echo') == 'false': continue  # its code is hidden on the site too; its outputs are pictures
        if code: parts.append(f'```python\n{code}\n```')
        txt = ''.join(''.join(o.get('text', '')) for o in c.get('outputs', []) if o.get('output_type') == 'stream')
        if txt.strip(): parts.append(f'```text\n{txt.rstrip()}\n```')
    return '\n\n'.join(p for p in parts if p) + '\n'

if __name__ == '__main__':
    text, readme = render(ROOT/'nbs'/'index.ipynb'), ROOT/'README.md'
    if '--check' in sys.argv:
        if readme.read_text() != text:
            sys.exit('README.md is out of date with nbs/index.ipynb or the results store: run python .ci/readme.py')
    else: readme.write_text(text)
