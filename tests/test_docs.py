"""The built HTML docs in a real headless browser (Debian's chromium driven by Playwright): every page loads, every
figure shows, every internal link (and #anchor) resolves, formulas are typeset (KaTeX from the site), the search
(Pagefind's static index) finds the right pages, the home page's pipeline figure loads, and no page requests
anything but the site itself (every request is recorded).

The site is `_site/` as `.ci/docs` builds it (rebuilt here when missing or older than the notebooks; set
SLSR_DOCS_SITE to check another folder). Screenshots go to test_artifacts/docs/.
"""
import functools, http.server, json, os, re, shutil, subprocess, sys, threading
from pathlib import Path
from urllib.parse import urljoin, urlparse, unquote
import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get('SLSR_DOCS_SITE') or ROOT/'_site')
ART = ROOT/'test_artifacts'/'docs'
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']

if os.environ.get('CI') and not Path(CHROMIUM).exists():  # CI installs chromium (.ci/browser-setup): never skip there
    raise RuntimeError(f'{CHROMIUM} is missing on CI: .ci/browser-setup should have installed it')
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason='chromium not installed: run .ci/browser-setup')


def _stale()->bool:
    idx = SITE/'pages.json'
    if not idx.exists(): return True
    if os.environ.get('SLSR_DOCS_SITE'): return False
    newest = max(p.stat().st_mtime for p in (*(ROOT/'nbs').rglob('*.ipynb'), *(ROOT/'nbs'/'experiments'/'results').rglob('*.json')))
    return newest > idx.stat().st_mtime


@pytest.fixture(scope='module')
def site():
    if _stale():
        r = subprocess.run(['bash', str(ROOT/'.ci'/'docs')], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, f'docs build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    pages = json.loads((SITE/'pages.json').read_text())
    handler = functools.partial(_Quiet, directory=str(SITE))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True); th.start()
    yield f'http://127.0.0.1:{srv.server_port}/', pages
    srv.shutdown(); srv.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass


@pytest.fixture(scope='module')
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_every_notebook_has_a_page(site):
    _, pages = site
    sources = {p['source'] for p in pages}
    nbs = {p.relative_to(ROOT/'nbs').as_posix() for p in (ROOT/'nbs').rglob('*.ipynb')
           if not any(x.startswith(('.', '_')) for x in p.relative_to(ROOT/'nbs').parts)}
    assert nbs <= sources, f'missing pages for {sorted(nbs - sources)}'
    assert pages[0]['page'] == 'index.html'


def test_pages_load_figures_show_links_resolve(site, browser):
    base, pages = site
    ART.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={'width': 1200, 'height': 900})
    outside = []
    def route(r):
        host = urlparse(r.request.url).hostname
        if r.request.url.startswith('data:') or host == '127.0.0.1': return r.continue_()
        outside.append(r.request.url); return r.abort()
    ctx.route('**/*', route)
    page = ctx.new_page()
    errors, problems, figures, links, ids = [], [], {}, [], {}
    page.on('pageerror', lambda e: errors.append(f'{page.url}: {e}'))
    for p in pages:
        url = urljoin(base, p['page'])
        resp = page.goto(url, wait_until='load')
        assert resp is not None and resp.status == 200, f'{url}: HTTP {resp and resp.status}'
        assert page.locator('h1').first.inner_text().strip(), f'{url}: no title'
        assert page.locator('nav#slsr-nav a').count() >= len(pages) - 1, f'{url}: navigation incomplete'
        imgs = page.evaluate('''() => Array.from(document.images).map(i => ({src: i.src.slice(0, 60),
                                   ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth}))''')
        bad = [i['src'] for i in imgs if not i['ok']]
        if bad: problems.append(f'{url}: {len(bad)} image(s) did not load: {bad[:3]}')
        figures[p['page']] = len(imgs)
        ids[p['page']] = set(page.evaluate('() => Array.from(document.querySelectorAll("[id],[name]")).map(e => e.id || e.getAttribute("name"))'))
        for href in page.evaluate('() => Array.from(document.querySelectorAll("a[href]")).map(a => a.getAttribute("href"))'):
            links.append((p['page'], href))
        if p['page'] in ('index.html', pages[1]['page']) or figures[p['page']]:
            page.screenshot(path=str(ART/(p['page'].replace('/', '_') + '.png')))
    # internal links: the target page exists and holds the #anchor
    checked = 0
    for src, href in links:
        u = urlparse(urljoin(urljoin(base, src), href))
        if u.scheme in ('mailto', 'javascript') or (u.scheme in ('http', 'https') and u.hostname != '127.0.0.1'): continue
        target = unquote(u.path).lstrip('/') or 'index.html'
        if target.endswith('/'): target += 'index.html'
        if not (SITE/target).is_file():
            problems.append(f'{src}: link {href!r} -> {target} does not exist'); continue
        if u.fragment and target in ids and u.fragment not in ids[target]:
            problems.append(f'{src}: link {href!r}: no #{u.fragment} in {target}')
        checked += 1
    ctx.close()
    assert not problems, '\n'.join(problems[:30])
    assert not errors, '\n'.join(errors[:10])
    assert not outside, f'pages tried to reach the internet: {sorted(set(outside))[:5]}'
    assert checked >= len(pages), f'only {checked} internal links checked'
    with_figs = [k for k, v in figures.items() if v]
    assert len(with_figs) >= 3, f'figures on too few pages: {figures}'


def _offline_context(browser):
    "A browser context that lets only the site's own requests through and records the others."
    ctx = browser.new_context(viewport={'width': 1200, 'height': 900})
    ctx.outside, ctx.requests = [], []
    def route(r):
        url = r.request.url; ctx.requests.append(url)
        if url.startswith('data:') or urlparse(url).hostname == '127.0.0.1': return r.continue_()
        ctx.outside.append(url); return r.abort()
    ctx.route('**/*', route)
    return ctx

_RAW_TEX = re.compile(r'\$[^$\n]*\\[A-Za-z]+[^$\n]*\$')           # $...\cmd...$ left as source text
_RAW_LINK = re.compile(r'\[`[^`\n]+`\]\([^)\s]+\)')               # [`name`](page.html#anchor) left as Markdown
_VISIBLE_TEXT = '''() => { const s = document.createElement('style'); s.textContent = '.katex { display: none !important; }';
  document.head.appendChild(s); const t = document.body.innerText; s.remove(); return t; }'''


def test_math_typeset_no_raw_tex_or_markdown(site, browser):
    base, pages = site
    ctx = _offline_context(browser); page = ctx.new_page()
    problems, counts = [], {}
    for p in pages:
        page.goto(urljoin(base, p['page']), wait_until='load')
        text = page.evaluate(_VISIBLE_TEXT)   # rendered formulas hidden: whatever TeX is left is raw
        for rx, what in ((_RAW_TEX, 'raw TeX'), (_RAW_LINK, 'raw Markdown link')):
            hits = rx.findall(text)
            if hits: problems.append(f"{p['page']}: {what}: {hits[:3]}")
        counts[p['page']] = page.locator('.katex').count()
    page.goto(urljoin(base, 'losses.html'), wait_until='load')
    sig_links = page.evaluate('() => Array.from(document.querySelectorAll("pre .c1 a")).map(a => a.getAttribute("href"))')
    tex = page.evaluate('() => Array.from(document.querySelectorAll(".katex annotation")).map(a => a.textContent)')
    fonts = page.evaluate('() => document.fonts.ready.then(() => document.fonts.check("16px KaTeX_Main"))')
    ctx.close()
    assert not problems, '\n'.join(problems[:20])
    assert any(h.endswith('#idsets') for h in sig_links), f'no link to IdSets in the signatures of the Losses page: {sig_links}'
    assert counts['losses.html'] >= 10, f'too few typeset formulas on the Losses page: {counts["losses.html"]}'
    assert any('\\sum_k q(k)\\log p(k)' in t for t in tex), tex[:10]
    assert fonts, 'KaTeX fonts did not load from the site'
    untypeset = [n for n in ('losses.html', 'slsr.html', 'eval.metrics.html', 'eval.rerank.html') if counts.get(n, 1) == 0]
    assert not untypeset, f'no typeset formula on {untypeset}: {counts}'   # pages whose prose is full of math
    assert not ctx.outside, f'pages requested non-local URLs: {sorted(set(ctx.outside))[:5]}'


def _search(page, url:str, query:str)->list:
    "Open a page, type a query into its search box and return the result links as site paths."
    page.goto(url, wait_until='load')
    page.locator('#slsr-search input').fill(query)
    page.wait_for_selector('.pagefind-ui__result-link', timeout=15000)
    page.wait_for_timeout(300)  # let the result list settle
    hrefs = page.evaluate('() => Array.from(document.querySelectorAll(".pagefind-ui__result-title .pagefind-ui__result-link")).map(a => a.href)')
    paths = [unquote(urlparse(h).path).lstrip('/') for h in hrefs]
    return [p + 'index.html' if p == '' or p.endswith('/') else p for p in paths]


def test_search_finds_the_right_pages(site, browser):
    base, pages = site
    ctx = _offline_context(browser); page = ctx.new_page()
    sub = [p['page'] for p in pages if '/' in p['page']]   # search from a page in a subfolder too: links stay right
    found = {q: _search(page, urljoin(base, u), q) for q, u in (('eval_market', 'index.html'),
                                                                 ('sparse label smoothing', sub[0] if sub else 'index.html'))}
    ctx.close()
    known = {p['page'] for p in pages}
    for q, hits in found.items():
        assert hits and set(hits) <= known, f'{q!r}: results {hits} are not pages of the site {sorted(known)}'
    assert found['eval_market'][0] == 'eval.metrics.html', found   # the page that defines it comes first
    assert 'losses.html' in found['sparse label smoothing'][:3], found
    assert any('/pagefind/' in u for u in ctx.requests), 'the search index was never fetched'
    assert not ctx.outside, f'the search requested non-local URLs: {sorted(set(ctx.outside))[:5]}'


def test_pipeline_figure_loads(site, browser):
    base, _ = site
    ART.mkdir(parents=True, exist_ok=True)
    ctx = _offline_context(browser); page = ctx.new_page()
    page.goto(urljoin(base, 'index.html'), wait_until='load')
    imgs = page.evaluate('''() => Array.from(document.querySelectorAll('.celltag_pipeline-figure img')).map(i =>
                               ({ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth, h: i.naturalHeight}))''')
    page.locator('.celltag_pipeline-figure').first.screenshot(path=str(ART/'pipeline_figure.png')) if imgs else None
    ctx.close()
    assert len(imgs) == 1 and imgs[0]['ok'], f'pipeline figure missing or broken on the home page: {imgs}'
    assert imgs[0]['w'] > 2 * imgs[0]['h'] > 400, f'pipeline figure too small: {imgs[0]}'
    assert not ctx.outside, sorted(set(ctx.outside))[:5]
