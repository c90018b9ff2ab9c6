"""The cluster explorer in JupyterLab, in a real headless browser.

A tiny pipeline run (synthetic data, stages up to the generated images) is made in-process while JupyterLab starts
on 127.0.0.1 (token, temporary folders, no news/update checks) with the kit's kernel `slsr_nb`. Headless Chromium,
driven by Playwright, opens nbs/experiments/cluster_explorer.ipynb with `run_dir` set to that run, runs all cells,
then works the explorer as a user does: hovers a point (its thumbnail, pid, camera and cluster appear), clicks it
(every image of its identity is selected), drags a box with the lasso tool (the montage and breakdown of the selection appear),
colours by camera and switches k (the map, the breakdown and the cluster panels follow). Every request the browser
makes is recorded: all must go to 127.0.0.1 (or be data:/blob: URLs). Screenshots: test_artifacts/explorer/.
The time of each interaction is printed (pytest -s). About two minutes on 2 cores.

`python tests/test_jupyterlab.py --points 12936` runs the same interactions on a fake run of that many points
(blob features, synthetic thumbnails) and prints the time per interaction.
"""
import json, os, re, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
ART = ROOT/'test_artifacts'/'explorer'
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
# software WebGL (SwiftShader): the scatter draws with WebGL and these machines have no GPU
FLAGS = ['--headless', '--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync']
TINY = dict(n_ids=10, n_test_ids=4, n_cams=3, n_distractors=5, n_junk=5, height=64, width=32)
RUN = dict(dataset='synthetic', protocol=TINY, backbone='resnet18', weights=None, height=32, width=16, batch_size=8,
           epochs=1, k_min=2, k_max=3, gan_size=32, gan_epochs=1, gan_batch_size=16, n_generated=20,
           smoothing=['slsr'], finetune_epochs=1, rerank=False, seed=0, stages='generate')

if os.environ.get('CI') and not Path(CHROMIUM).exists():  # CI installs chromium (.ci/browser-setup): never skip there
    raise RuntimeError(f'{CHROMIUM} is missing on CI: .ci/browser-setup should have installed it')
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason='chromium not installed: run .ci/browser-setup')


def _kernel_available():
    from jupyter_client.kernelspec import KernelSpecManager
    return 'slsr_nb' in KernelSpecManager().find_kernel_specs()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _start_lab(work):
    "JupyterLab on 127.0.0.1 with a token, temporary settings and the kernel slsr_nb; (process, base URL, token, log)."
    settings = work/'settings'/'@jupyterlab'/'apputils-extension'
    settings.mkdir(parents=True)
    (settings/'notification.jupyterlab-settings').write_text(json.dumps({'fetchNews': 'false', 'checkForUpdates': False}))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, 'JUPYTERLAB_SETTINGS_DIR': str(work/'settings'), 'JUPYTERLAB_WORKSPACES_DIR': str(work/'ws'),
           'JUPYTER_RUNTIME_DIR': str(work/'runtime'), 'JUPYTER_CONFIG_DIR': str(work/'config'),
           'MPLBACKEND': 'module://matplotlib_inline.backend_inline'}
    log = open(work/'lab.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
                             f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={work}',
                             '--LabApp.news_url=None', '--LabApp.extension_manager=readonly',
                             '--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate',
                             '--MappingKernelManager.default_kernel_name=slsr_nb']
                            + (['--allow-root'] if os.geteuid() == 0 else []),  # CI runs as root
                            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, f'http://127.0.0.1:{port}', token, log


def _wait_lab(proc, base, token, work):
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f'{base}/api/status?token={token}', timeout=2); return
        except Exception:
            if proc.poll() is not None: break
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f'JupyterLab did not start:\n{(work/"lab.log").read_text()[-3000:]}')


def _stop_lab(proc, base, token, log):
    try:
        req = urllib.request.Request(f'{base}/api/shutdown', method='POST', headers={'Authorization': f'token {token}'})
        urllib.request.urlopen(req, timeout=10)
        proc.wait(timeout=30)
    except Exception:
        proc.terminate()
        try: proc.wait(timeout=10)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
    log.close()


def _explorer_notebook(work, run_dir):
    "The explorer notebook with `run_dir` set, written into the lab's folder with the kernel slsr_nb."
    import nbformat, papermill
    nb = papermill.iorw.load_notebook_node(str(ROOT/'nbs'/'experiments'/'cluster_explorer.ipynb'))
    nb = papermill.parameterize.parameterize_notebook(nb, dict(run_dir=str(run_dir), n_montage=12,
                                                               out_dir=str(work/'figs')))
    nb.metadata['kernelspec'] = {'name': 'slsr_nb', 'display_name': 'Python (slsr_nb)', 'language': 'python'}
    nbformat.write(nb, work/'explorer.ipynb')


def tiny_run(work):
    "A tiny pipeline run of the synthetic set, up to the generated images (the stages the explorer reads)."
    from slsr_nb.pipeline import run_pipeline
    (work/'data').mkdir()
    run_pipeline({**RUN, 'data_root': str(work/'data'), 'run_dir': str(work/'run')}, log=lambda *a: None)
    return work/'run'


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    if not _kernel_available(): pytest.skip("kernel 'slsr_nb' not registered: run .ci/setup")
    work = tmp_path_factory.mktemp('lab')
    proc, base, token, log = _start_lab(work)   # it starts while the run is made
    try:
        t = time.time(); run = tiny_run(work); print(f'\ntiny run: {time.time() - t:.1f} s')
        _wait_lab(proc, base, token, work)
        _explorer_notebook(work, run)
        yield dict(base=base, token=token, work=work, run=run)
    finally:
        _stop_lab(proc, base, token, log)


def _accept_kernel_dialog(page, wait_ms=3000, timeout=90):
    "JupyterLab may ask which kernel to start (the preselected one is the notebook's, slsr_nb): accept until no dialog is left."
    try: page.wait_for_selector('.jp-Dialog', timeout=wait_ms)
    except Exception: return
    end = time.time() + timeout  # a busy machine can take long to act on the click; a second dialog may follow
    while page.locator('.jp-Dialog').count() and time.time() < end:
        accept = page.locator('.jp-Dialog button.jp-mod-accept')
        if accept.count():
            try: accept.first.click(timeout=5_000)
            except Exception: pass
        page.wait_for_timeout(1_000)
    left = page.locator('.jp-Dialog')
    assert not left.count(), f'a JupyterLab dialog stayed open: {left.first.inner_text()[:300]!r}'


def _wait_for(page, fn, what, timeout=60):
    "Poll `fn()` until it returns something truthy; fail naming `what`."
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v: return v
        page.wait_for_timeout(50)
    raise AssertionError(f'{what} did not happen within {timeout}s')


def _tooltip(page):
    "(thumbnail data URI, tooltip text) of the scatter's tooltip when one is fully shown, else None."
    return page.evaluate('''() => {
        for (const el of document.querySelectorAll('.slsr-explorer *')) {
            const b = getComputedStyle(el).backgroundImage || '';
            if (!b.startsWith('url("data:image/jpeg')) continue;
            let op = 1, e = el, text = '';
            while (e && !e.classList.contains('slsr-explorer')) {
                const s = getComputedStyle(e);
                if (s.display === 'none' || s.visibility === 'hidden') op = 0;
                op *= parseFloat(s.opacity);
                if (!text && /Camera/.test(e.innerText || '')) text = e.innerText;
                e = e.parentElement; }
            if (op > 0.95 && text) return [b.slice(5, 90), text];
        }
        return null; }''')


def _screen_points(emb, box):
    "Where jupyter-scatter draws each point: the data extent normalised to [-1, 1], fitted to the canvas' shorter side."
    import numpy as np
    lo, hi = emb.min(0), emb.max(0)
    n = (emb - lo) / (hi - lo) * 2 - 1
    s = min(box['width'], box['height']) / 2
    cx, cy = box['x'] + box['width'] / 2, box['y'] + box['height'] / 2
    return np.stack([cx + n[:, 0] * s, cy - n[:, 1] * s], 1)


def _hover_until_tooltip(page, pts, order, tries=12):
    "Move the pointer over points (loneliest first, a few pixels around each) until a thumbnail tooltip shows."
    for i in order[:tries]:
        for dx, dy in ((0, 0), (3, 0), (-3, 0), (0, 3), (0, -3)):
            page.mouse.move(float(pts[i, 0] + dx), float(pts[i, 1] + dy), steps=2)
            page.wait_for_timeout(60)
            t = time.time()
            while time.time() - t < 1.5:
                tip = _tooltip(page)
                if tip: return i, (float(pts[i, 0] + dx), float(pts[i, 1] + dy)), tip
                page.wait_for_timeout(40)
    raise AssertionError('no thumbnail tooltip appeared over any of the points tried')


def _breakdown(page):
    return page.locator('.slsr-breakdown').first.inner_text()


def _n_selected(text):
    m = re.search(r'(\d+) images selected', text); return int(m.group(1)) if m else 0


def _selects(page):
    "The explorer's dropdowns: k, colour, identity."
    s = page.locator('.slsr-explorer .widget-dropdown select')
    return s.nth(0), s.nth(1), s.nth(2)


def explore(page, base, token, emb, pids, art=ART, timings=None):
    "Open the explorer notebook, run it and drive every interaction; returns {interaction: seconds}."
    import numpy as np
    timings = {} if timings is None else timings
    t0 = time.time()
    page.goto(f'{base}/lab/tree/explorer.ipynb?token={token}', wait_until='domcontentloaded')
    page.wait_for_selector('.jp-Notebook .jp-Cell', timeout=60_000)
    _accept_kernel_dialog(page)
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=60_000)
    timings['JupyterLab page and kernel ready'] = time.time() - t0
    page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
    page.locator('.lm-Menu-itemLabel', has_text='Run All Cells').first.click()
    _accept_kernel_dialog(page)
    t = time.time()
    page.wait_for_selector('.slsr-explorer canvas', timeout=240_000)
    timings['run all cells → explorer shown'] = time.time() - t
    page.wait_for_selector('.slsr-panel', timeout=60_000)
    page.locator('.slsr-explorer').first.scroll_into_view_if_needed()
    page.wait_for_timeout(1500)                                    # the first WebGL frame
    canvas = page.locator('.slsr-explorer canvas').first
    box = canvas.bounding_box()
    art.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(art/'1_opened.png'))
    k_sel, c_sel, id_sel = _selects(page)
    k0 = int(k_sel.input_value())
    assert page.locator('.slsr-panel').count() == k0
    # hover: the loneliest points first, so that exactly one lies under the pointer
    pts = _screen_points(emb, box)
    d = np.linalg.norm(pts[:, None] - pts[None], axis=2) + np.eye(len(pts)) * 1e9 if len(pts) < 3000 else None
    order = np.argsort(-d.min(1)) if d is not None else np.random.default_rng(0).permutation(len(pts))
    t = time.time()
    i, at, (uri, text) = _hover_until_tooltip(page, pts, order)
    timings['hover → thumbnail'] = time.time() - t
    page.screenshot(path=str(art/'2_hover.png'))
    assert uri.startswith('data:image/jpeg;base64,'), uri
    shown = {m[0].lower(): m[1] for m in re.findall(r'(Pid|Camera|Cluster \(k=\d+\))\s*\n\s*(-?\d+)', text)}
    assert set(shown) == {'pid', 'camera', f'cluster (k={k0})'}, text
    pid_shown = int(shown['pid'])
    assert pid_shown in set(pids[np.linalg.norm(pts - np.array(at), axis=1) < 8].tolist()), (text, at)
    # click it: every image of its identity is selected
    t = time.time()
    page.mouse.click(*at)
    b = _wait_for(page, lambda: _n_selected(_breakdown(page)) and _breakdown(page), 'the identity highlight', 30)
    timings['click → identity highlighted'] = time.time() - t
    assert _n_selected(b) == int((pids == pid_shown).sum()) and '1 identities' in b, (b, pid_shown)
    _wait_for(page, lambda: id_sel.input_value() == str(pid_shown), 'the identity menu showing the clicked identity', 10)
    page.screenshot(path=str(art/'3_identity.png'))
    # box selection (the lasso tool in box mode): a montage and the breakdown of what is inside. The box holds the
    # left half of the points (a box in the map's middle can hold none: a UMAP of two clusters may leave it empty)
    before = _breakdown(page)
    lo, hi = pts.min(0), pts.max(0)
    x0, y0 = float(max(lo[0] - 8, box['x'] + 2)), float(max(lo[1] - 8, box['y'] + 2))
    x1, y1 = float(np.median(pts[:, 0])) + .5, float(min(hi[1] + 8, box['y'] + box['height'] - 2))
    page.locator('.slsr-explorer button[title="Activate lasso selection"]').click()   # the lasso tool, box-shaped
    page.mouse.move(x0, y0); page.mouse.down()
    for j in range(1, 13): page.mouse.move(x0 + (x1 - x0) * j / 12, y0 + (y1 - y0) * j / 12); page.wait_for_timeout(25)
    t = time.time()
    page.mouse.up()
    b = _wait_for(page, lambda: (_breakdown(page) != before and _n_selected(_breakdown(page))) and _breakdown(page),
                  'the box selection breakdown', 30)
    timings['box released → montage and breakdown'] = time.time() - t
    inside = ((pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > y0) & (pts[:, 1] < y1)).sum()
    n = _n_selected(b)
    assert 0 < n < len(pids) and n <= inside + max(3, .1 * inside), (n, inside, b)   # only what the box holds
    assert 'cameras' in b and f'clusters (k={k0})' in b
    for part in ('identities \\(images\\)', 'cameras', f'clusters \\(k={k0}\\)'):   # each breakdown adds up to n
        counts = re.search(part + r': ([^\n…]*)', b).group(1).strip(', ').split(', ')
        if '…' not in b: assert sum(int(kv.split(': ')[1]) for kv in counts) == n, (part, b)
    mont = page.locator('.slsr-explorer img.slsr-selection-montage').first
    assert mont.is_visible() and mont.get_attribute('src', timeout=5000).startswith(('blob:', 'data:image/png'))
    page.screenshot(path=str(art/'4_box_selection.png'))
    # colour by camera: the map is redrawn
    shot = canvas.screenshot()
    t = time.time()
    c_sel.select_option('camera')
    _wait_for(page, lambda: canvas.screenshot() != shot, 'the recolouring by camera', 30)
    timings['colour by camera → map redrawn'] = time.time() - t
    page.screenshot(path=str(art/'5_by_camera.png'))
    # another k: the breakdown and the panels follow
    k1 = next(int(v) for v in k_sel.locator('option').all_inner_texts() if int(v) != k0)
    t = time.time()
    k_sel.select_option(str(k1))
    _wait_for(page, lambda: page.locator('.slsr-panel').count() == k1 and f'clusters (k={k1})' in _breakdown(page),
              f'the switch to k={k1}', 30)
    timings[f'k={k0} → k={k1} (panels, breakdown)'] = time.time() - t
    assert f'k={k1}' in page.locator('.slsr-info').first.inner_text()
    page.screenshot(path=str(art/'6_k_changed.png'))
    k_sel.select_option(str(k0))                                   # back to the GANs' k: a panel with its samples
    _wait_for(page, lambda: page.locator('.slsr-panel').count() == k0, f'the switch back to k={k0}', 30)
    card = page.locator('.slsr-card').first
    card.scroll_into_view_if_needed(); page.wait_for_timeout(300)
    assert 'generated by its GAN' in card.inner_text()
    card.screenshot(path=str(art/'7_cluster_panel.png'))
    errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    assert not any('Traceback' in e or 'Error' in e for e in errors), errors
    return timings


def _browser(p, profile):
    return p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=FLAGS,
                                                viewport={'width': 1400, 'height': 1000})


def _record(ctx, base):
    "Record every request the browser makes; let only local ones through."
    seen, outside = [], []
    def route(r):
        u = r.request.url; seen.append(u)
        if u.startswith(('data:', 'blob:', base, 'ws://127.0.0.1')): return r.continue_()
        outside.append(u); return r.abort()
    ctx.route('**/*', route)
    ctx.on('websocket', lambda ws: seen.append(ws.url))
    return seen, outside


def test_explorer_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright
    import numpy as np
    from slsr_nb.explorer import finished_stage
    from slsr_nb.features import load_features
    emb = np.load(finished_stage(lab['run'], 'clusters')/'umap.npy')
    pids = np.asarray(load_features(finished_stage(lab['run'], 'features')/'train')['pids'])
    with sync_playwright() as p:
        ctx = _browser(p, lab['work']/'chromium-profile')
        seen, outside = _record(ctx, lab['base'])
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        try:
            timings = explore(page, lab['base'], lab['token'], emb, pids)
        except Exception:
            ART.mkdir(parents=True, exist_ok=True); page.screenshot(path=str(ART/'failure.png'))
            raise
        finally:
            ctx.close()
    print('\n'.join(f'{k}: {v:.2f} s' for k, v in timings.items()))
    assert len(seen) > 20 and not outside, f'the browser tried to reach the internet: {sorted(set(outside))[:5]}'
    assert all(u.startswith(('data:', 'blob:', lab['base'], 'ws://127.0.0.1')) for u in seen)
    assert any((lab['run']/'explorer').glob('thumbs_*.txt')), 'thumbnails are cached in the run folder'
