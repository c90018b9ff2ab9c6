"""Build the HTML docs from the notebooks without Quarto: execute, nbdev-process, render with nbconvert, add navigation.

1. copy nbs/ to build/docs_nbs/ and execute every notebook whose code cells have no outputs (cells flagged
   slow/gpu/browser and the `nbdev_export()` cell are skipped, as `nbdev_test` does; notebooks whose front matter
   says `skip_exec: true`, such as the experiment notebooks, are rendered as they are);
2. `nbdev_proc_nbs` on that copy (so `show_doc`, `#| hide`, `#| echo: false`, front matter and doc links are nbdev's);
3. nbconvert's HTML exporter per processed notebook, Quarto cell options honoured (include/echo/output, and
   `output: asis`: printed Markdown, as the results tables print it), external scripts removed (the pages work
   offline), doc links to the docs host made relative (also those nbdev puts in signatures' comments), a navigation
   sidebar added;
4. math typeset in the browser by KaTeX served from the site (Debian's libjs-katex, copied into _katex/), and a search
   index of every page built by Pagefind (PyPI `pagefind[bin]`, a static index and UI in pagefind/): both work from
   the built files alone, with no server behind them and no request leaving the site.

Usage: python .ci/docs_build.py [--out _site] [--no-exec] [--workers 2] [--only NAME ...]
"""
import argparse, html, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor, as_completed
from configparser import ConfigParser
from pathlib import Path
import multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]
KATEX = Path(os.environ.get('SLSR_KATEX_DIR', '/usr/share/javascript/katex'))  # Debian's libjs-katex


def cfg():
    c = ConfigParser(delimiters=['=']); c.read(ROOT/'settings.ini'); return c['DEFAULT']


def notebooks(nbs:Path, only=None):
    out = sorted(p for p in nbs.rglob('*.ipynb') if not any(part.startswith(('.', '_')) for part in p.relative_to(nbs).parts))
    if only: out = [p for p in out if p.stem in only or str(p.relative_to(nbs)) in only]
    return out


def _directives(src:str)->dict:
    "Leading `#| key: value` / `#| flag` lines of a code cell."
    d = {}
    for line in src.splitlines():
        m = re.match(r'^\s*#\|\s*(.*)$', line)
        if not m:
            if line.strip(): break
            continue
        body = m.group(1).strip()
        if ':' in body and not body.split(':', 1)[0].strip().count(' '):
            k, v = body.split(':', 1); d[k.strip()] = v.strip()
        else:
            for w in body.split(): d[w] = ''
    return d


def _has_outputs(nb)->bool:
    return any(c.get('outputs') for c in nb['cells'] if c['cell_type'] == 'code')


def _mixed_import_test_cell(cell)->bool:
    "A non-exported code cell holding imports and other statements (nbdev_proc_nbs would run it without its context)."
    import ast
    if cell.cell_type != 'code': return False
    d = _directives(cell.source)
    if set(d) & {'export', 'exports', 'exporti', 'exec_doc'}: return False
    try: tree = ast.parse(cell.source)
    except SyntaxError: return False
    nodes = list(ast.walk(tree))
    has_import = any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in nodes)
    return has_import and any(not isinstance(n, (ast.Import, ast.ImportFrom)) for n in tree.body)


def execute_one(path:str, skip_flags:tuple)->tuple:
    "Execute one notebook in place (execnb, like nbdev_test) and keep its outputs; returns (path, seconds, error)."
    mp.set_start_method('fork', force=True)  # a notebook's DataLoader workers fork, as under nbdev_test: classes defined
                                             # in a notebook live in its namespace and cannot be pickled to spawned ones
    os.environ.setdefault('MPLBACKEND', 'module://matplotlib_inline.backend_inline')
    os.environ['IN_TEST'] = '1'
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from nbdev.process import NBProcessor
    from nbdev.frontmatter import FrontmatterProc
    p = Path(path)
    t = time.time()
    fm = getattr(NBProcessor(p, procs=FrontmatterProc, process=True).nb, 'frontmatter_', {}) or {}
    if str(fm.get('skip_exec', '')).lower() == 'true': return path, 0.0, None
    nb = read_nb(p)

    def flagged(cell): return cell.cell_type == 'code' and bool(set(skip_flags) & set(_directives(cell.source)))
    def skip(cell):
        if cell.cell_type != 'code': return True
        if 'nbdev_export' + '(' in cell.source: return True
        return flagged(cell) or _directives(cell.source).get('eval', '').lower() == 'false'
    def mark_unevaluated():
        "nbdev_proc_nbs re-runs, in a fresh namespace, every cell that holds an import: keep flagged (slow/gpu/browser)"
        "cells and already-run test cells that mix imports with other code from running there (outputs stay)."
        for c in nb.cells:
            if flagged(c) or _mixed_import_test_cell(c): c.source = '#| eval: false\n' + c.source
        write_nb(nb, p)

    if _has_outputs(nb): mark_unevaluated(); return path, 0.0, None

    sh = CaptureShell(p)
    cwd = os.getcwd(); os.chdir(p.parent)
    try:
        sh.run_all(nb, exc_stop=True, preproc=skip)
    except Exception:
        return path, time.time() - t, sh.prettytb(fname=p)
    finally:
        os.chdir(cwd)
    mark_unevaluated()
    return path, time.time() - t, None


def execute_all(nbs:Path, workers:int, only=None):
    flags = tuple(re.split(r'[\s|]+', cfg().get('tst_flags', '').strip()))  # nbdev 2 separates them with spaces
    todo = [str(p) for p in notebooks(nbs, only)]
    errors = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context('spawn'), max_tasks_per_child=1) as ex:
        futs = [ex.submit(execute_one, p, flags) for p in todo]
        for f in as_completed(futs):
            path, secs, err = f.result()
            print(f'[docs] executed {Path(path).relative_to(nbs)} in {secs:.1f}s' + (' (FAILED)' if err else ''), flush=True)
            if err: errors.append((path, err))
    return errors


# ---------- rendering ----------

def _front(nb)->tuple:
    "(front matter dict, cells without the front-matter raw cell)."
    import yaml
    cells = nb.cells
    if cells and cells[0].cell_type == 'raw' and cells[0].source.lstrip().startswith('---'):
        fm = yaml.safe_load(cells[0].source.strip().strip('-')) or {}
        return fm, cells[1:]
    return {}, cells


def _out_name(rel:Path, fm:dict)->Path:
    name = fm.get('output-file') or (rel.stem + '.html')
    if not name.endswith('.html'): name += '.html'
    return rel.parent/name


def prepare(nb, rel:Path, doc_url:str, page_of:dict):
    "Apply front matter and Quarto cell options; fix links. Returns (nb, title, description)."
    import nbformat
    fm, cells = _front(nb)
    title = fm.get('title') or rel.stem
    desc = fm.get('description', '')
    depth = len(rel.parts) - 1
    up = '../' * depth
    keep = []
    for c in cells:
        if c.cell_type == 'markdown':
            if c.source.strip().startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): continue
            c.source = _fix_links(c.source, doc_url, up, page_of, rel)
        if c.cell_type == 'code':
            d = _directives(c.source)
            if d.get('include') == 'false' or 'hide' in d: continue
            outs = c.get('outputs', [])
            if d.get('output') == 'asis' and outs and all(o.get('output_type') == 'stream' for o in outs):
                text = ''.join(o.get('text', '') for o in outs)  # printed Markdown (Quarto's `output: asis`)
                keep.append(nbformat.v4.new_markdown_cell(_fix_links(text, doc_url, up, page_of, rel))); continue
            tags = set(c.metadata.get('tags', []))
            if d.get('echo') == 'false': tags.add('remove_input')
            if d.get('output') == 'false': tags.add('remove_output')
            c.source = '\n'.join(l for l in c.source.splitlines() if not re.match(r'^\s*#\|', l)).strip('\n')
            if not c.source.strip() and 'remove_output' in tags: continue
            if not c.source.strip(): tags.add('remove_input')
            c.metadata['tags'] = sorted(tags)
            for o in c.get('outputs', []):
                if o.get('output_type') in ('display_data', 'execute_result') and 'text/markdown' in o.get('data', {}):
                    o['data']['text/markdown'] = _fix_links(o['data']['text/markdown'], doc_url, up, page_of, rel)
        keep.append(c)
    head = nbformat.v4.new_markdown_cell(f'# {title}' + (f'\n\n> {desc}' if desc else ''))
    nb.cells = [head] + keep
    return nb, title, desc


def _fix_links(text:str, doc_url:str, up:str, page_of:dict, rel:Path)->str:
    if doc_url: text = text.replace(doc_url.rstrip('/') + '/', up)
    text = re.sub(r'\)\{(?:target|style)=[^}]*\}', ')', text)  # pandoc link attributes from show_doc
    def ipynb(m):
        target = m.group(2)
        base = (rel.parent/target.split('#')[0]).as_posix()
        base = os.path.normpath(base)
        page = page_of.get(base)
        if page is None: return m.group(0)
        frag = ('#' + target.split('#', 1)[1]) if '#' in target else ''
        return f'{m.group(1)}{os.path.relpath(page, rel.parent.as_posix() or ".")}{frag})'
    return re.sub(r'(\]\()([^)\s]+?\.ipynb(?:#[^)\s]*)?)\)', ipynb, text)


_CSS = '''
<style>
 body { margin: 0; }
 nav#slsr-nav { position: fixed; top: 0; left: 0; bottom: 0; width: 15rem; overflow-y: auto; padding: 1rem .8rem;
   background: #f6f7f9; border-right: 1px solid #ddd; font: 14px/1.4 system-ui, sans-serif; box-sizing: border-box; }
 nav#slsr-nav a { display: block; padding: .2rem .3rem; color: #24292f; text-decoration: none; border-radius: 4px; }
 nav#slsr-nav a:hover { background: #e6e8eb; }  nav#slsr-nav a.current { background: #dbe4f0; font-weight: 600; }
 nav#slsr-nav .section { margin: .8rem 0 .2rem; color: #57606a; font-size: 12px; text-transform: uppercase; }
 main#slsr-main { margin-left: 15rem; padding: 0 1.5rem 3rem; max-width: 70rem; }
 .jp-InputPrompt, .jp-OutputPrompt { display: none !important; }
 #slsr-search { margin: 1rem 0 0; max-width: 48rem; }
</style>
'''


def _nav(pages:list, current:Path)->str:
    rows, section = ['<nav id="slsr-nav"><a href="%s"><strong>slsr_nb</strong></a>' % html.escape(os.path.relpath('index.html', current.parent.as_posix() or '.'))], None
    for p in pages:
        sec = 'Experiments' if len(p['out'].parts) > 1 else 'Results' if p['rel'].stem == 'results' else 'Library'
        if p['out'].name == 'index.html' and len(p['out'].parts) == 1: continue
        if sec != section: rows.append(f'<div class="section">{sec}</div>'); section = sec
        href = os.path.relpath(p['out'].as_posix(), current.parent.as_posix() or '.')
        cls = ' class="current"' if p['out'] == current else ''
        rows.append(f'<a{cls} href="{html.escape(href)}">{html.escape(p["title"])}</a>')
    rows.append('</nav>')
    return '\n'.join(rows)


def render_all(proc:Path, out:Path, only=None):
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config
    c = Config()
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_input_tags = {'remove_input'}
    c.TagRemovePreprocessor.remove_all_outputs_tags = {'remove_output'}
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    ex = HTMLExporter(config=c, template_name='lab')
    s = cfg(); doc_url = s.get('doc_host', '').rstrip('/') + s.get('doc_baseurl', '')
    pages = []
    for p in notebooks(proc, only):
        rel = p.relative_to(proc)
        nb = nbformat.read(p, as_version=4)
        fm, _ = _front(nb)
        pages.append(dict(src=p, rel=rel, out=_out_name(rel, fm), title=fm.get('title') or rel.stem))
    # index first, then library pages in notebook order, then experiments
    pages.sort(key=lambda d: (d['rel'].name != 'index.ipynb', len(d['rel'].parts) > 1, d['rel'].stem == 'results', d['rel'].as_posix()))
    page_of = {os.path.normpath(d['rel'].as_posix()): d['out'].as_posix() for d in pages}
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in proc.rglob('*'):  # images and other files the notebooks link to
        if f.is_file() and f.suffix not in ('.ipynb', '.yml', '.yaml', '.py') and not any(x.startswith('.') for x in f.relative_to(proc).parts):
            (out/f.relative_to(proc)).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, out/f.relative_to(proc))
    for d in pages:
        nb = nbformat.read(d['src'], as_version=4)
        nb, title, desc = prepare(nb, d['rel'], doc_url, page_of)
        body, _ = ex.from_notebook_node(nb, resources={'metadata': {'name': title}})
        body = re.sub(r'<script[^>]+src="https?://[^"]*"[^>]*>\s*</script>', '', body)   # no CDN scripts: works offline
        body = re.sub(r'<link[^>]+href="https?://[^"]*"[^>]*>', '', body)
        body = re.sub(r'<script[^>]*>\s*(?:window\.)?MathJax[\s\S]*?</script>', '', body)
        body = re.sub(r'<script[^>]*>(?:(?!</script>)[\s\S])*?https?://(?:unpkg\.com|cdnjs\.cloudflare\.com|cdn\.jsdelivr\.net)(?:(?!</script>)[\s\S])*</script>', '', body)
        body = re.sub(r'(<h[1-6][^>]*\bid="([^"]+)"[^>]*>)',  # Quarto's lower-case anchors, which nbdev's doc links use
                      lambda m: m.group(1) + (f'<a id="{m.group(2).lower()}"></a>' if m.group(2) != m.group(2).lower() else ''), body)
        body = _link_comments(body)
        up = '../' * (len(d['out'].parts) - 1)
        body = body.replace('</head>', _CSS + _HEAD.replace('{up}', up) + '</head>', 1)
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + _nav(pages, d['out']) +
                      '<main id="slsr-main" data-pagefind-body><div id="slsr-search" data-pagefind-ignore></div>', body, count=1)
        body = body.replace('</body>', '</main></body>', 1)
        dest = out/d['out']; dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(body, encoding='utf-8')
        print(f'[docs] {d["rel"]} -> {d["out"]}', flush=True)
    _drop_dead_anchors(out, pages)
    _copy_katex(out/'_katex')
    (out/'pages.json').write_text(json.dumps([{'page': d['out'].as_posix(), 'title': d['title'], 'source': d['rel'].as_posix()} for d in pages], indent=1))
    return pages


_HEAD = r'''
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{up}_katex/katex.min.css">
<script defer src="{up}_katex/katex.min.js"></script>
<script defer src="{up}_katex/contrib/auto-render.js"></script>
<link rel="stylesheet" href="{up}pagefind/pagefind-ui.css">
<script src="{up}pagefind/pagefind-ui.js"></script>
<script>
document.addEventListener('DOMContentLoaded', () => {
  renderMathInElement(document.getElementById('slsr-main'), {throwOnError: false, delimiters: [
    {left: '$$', right: '$$', display: true}, {left: '$', right: '$', display: false},
    {left: '\\(', right: '\\)', display: false}, {left: '\\[', right: '\\]', display: true}]});
  new PagefindUI({element: '#slsr-search', showSubResults: true, showImages: false, resetStyles: false,
                 baseUrl: new URL('{up}./', location.href).pathname});  // the site's root, wherever it is served
});
</script>
'''


def _link_comments(body:str)->str:
    "nbdev turns a backticked name in a parameter's comment into a Markdown link, left raw in the signature's code."
    def fix(m):
        return re.sub(r'\[`([^`<>\]]+)`\]\(([^()\s<>"]+)\)', r'<a href="\2"><code>\1</code></a>', m.group(0))
    return re.sub(r'<span class="c1">(?:(?!</span>).)*</span>', fix, body, flags=re.S)


def _copy_katex(dest:Path):
    "KaTeX's script, auto-render, stylesheet and woff2 fonts, served from the site itself."
    if not (KATEX/'katex.min.js').is_file():
        sys.exit(f'[docs] KaTeX not found in {KATEX}: run `bash .ci/browser-setup` (installs Debian\'s libjs-katex) '
                 'or set SLSR_KATEX_DIR to a folder holding katex.min.js')
    shutil.copytree(KATEX, dest, ignore=lambda d, names: [n for n in names if n.endswith(('.ttf', '.woff', '.mjs'))])


def _search_index(out:Path):
    "Pagefind reads the built pages (their <main>) and writes a static search index and its UI into pagefind/."
    r = subprocess.run([sys.executable, '-m', 'pagefind', '--site', str(out)], capture_output=True, text=True)
    if r.returncode != 0 or not (out/'pagefind'/'pagefind-ui.js').is_file():
        sys.exit(f'[docs] pagefind failed (pip install "pagefind[bin]", pinned in settings.ini):\n{r.stdout[-2000:]}{r.stderr[-2000:]}')
    print('[docs] ' + (re.findall(r'Indexed \d+ pages?', r.stdout) or ['search index written'])[0], flush=True)


def _drop_dead_anchors(out:Path, pages:list):
    """nbdev links every backticked name of the kit; names without a rendered doc (private helpers) have no anchor:
    such links become plain code, so every link left in the site resolves."""
    ids = {d['out'].as_posix(): set(re.findall(r'\b(?:id|name)="([^"]+)"', (out/d['out']).read_text(encoding='utf-8'))) for d in pages}
    for d in pages:
        f = out/d['out']; here = d['out'].parent.as_posix() or '.'
        def fix(m):
            href, inner = m.group(1), m.group(2)
            if href.startswith(('http:', 'https:', 'mailto:')) or '#' not in href: return m.group(0)
            path, frag = href.split('#', 1)
            target = os.path.normpath(os.path.join(here, path)) if path else d['out'].as_posix()
            if target in ids and frag not in ids[target]: return inner
            return m.group(0)
        f.write_text(re.sub(r'<a href="([^"]*)"[^>]*>((?:(?!</a>).)*)</a>', fix, f.read_text(encoding='utf-8'), flags=re.S), encoding='utf-8')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=str(ROOT/'_site'), help='output folder (default _site)')
    ap.add_argument('--no-exec', action='store_true', help='render the notebooks as stored, without executing them')
    ap.add_argument('--workers', type=int, default=2, help='notebooks executed at once')
    ap.add_argument('--only', nargs='*', help='notebook names (stems) to build, e.g. index 00_core')
    a = ap.parse_args(argv)
    t0 = time.time()
    nbs = ROOT/cfg().get('nbs_path', 'nbs')
    work = ROOT/'build'/'docs_nbs'
    if work.exists(): shutil.rmtree(work)
    shutil.copytree(nbs, work, ignore=shutil.ignore_patterns('.ipynb_checkpoints', '__pycache__'))
    if a.only:  # keep what was asked for (and index, the home page)
        keep = set(a.only) | {'index'}
        for p in notebooks(work):
            if p.stem not in keep: p.unlink()
    if not a.no_exec:
        errors = execute_all(work, a.workers)
        if errors:
            for path, err in errors: print(f'[docs] {path} failed:\n{err}', file=sys.stderr)
            print(f'[docs] {len(errors)} notebook(s) failed to execute; no site written', file=sys.stderr)
            return 1
    from nbdev.serve import proc_nbs
    proc = proc_nbs(path=str(work), n_workers=0, force=True)
    pages = render_all(Path(proc), Path(a.out), a.only and (set(a.only) | {'index'}))
    _search_index(Path(a.out))
    print(f'[docs] {len(pages)} pages in {a.out} ({time.time() - t0:.0f}s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
