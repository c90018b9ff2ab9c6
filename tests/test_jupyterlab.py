"""The cluster explorer in JupyterLab, in a real headless browser.

Starts JupyterLab on 127.0.0.1 (token, temporary folders, no news/update checks) with the kit's kernel `slsr_nb`,
opens nbs/experiments/cluster_explorer.ipynb (parameters made tiny) in headless Chromium driven by Playwright, runs
all cells from the Run menu, then changes the cluster and k through the widgets and checks that the text, the
highlighted UMAP scatter and the montage change. Every request that leaves 127.0.0.1 is blocked and counted.
Screenshots: test_artifacts/explorer/. About a minute on 2 cores.
"""
import json, os, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
ART = ROOT/'test_artifacts'/'explorer'
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']
TINY = dict(n_ids=10, n_test_ids=4, n_cams=3, n_distractors=5, n_junk=5, height=64, width=32)

if os.environ.get('CI') and not Path(CHROMIUM).exists():  # CI installs chromium (.ci/browser-setup): never skip there
    raise RuntimeError(f'{CHROMIUM} is missing on CI: .ci/browser-setup should have installed it')
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason='chromium not installed: run .ci/browser-setup')


def _kernel_available():
    from jupyter_client.kernelspec import KernelSpecManager
    return 'slsr_nb' in KernelSpecManager().find_kernel_specs()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    if not _kernel_available(): pytest.skip("kernel 'slsr_nb' not registered: run .ci/setup")
    import nbformat, papermill
    work = tmp_path_factory.mktemp('lab')
    from slsr_nb.data.datasets import load_dataset
    load_dataset('synthetic', root=work/'data', verbose=False, **TINY)   # made before the browser starts
    nb = papermill.iorw.load_notebook_node(str(ROOT/'nbs'/'experiments'/'cluster_explorer.ipynb'))
    nb = papermill.parameterize.parameterize_notebook(nb, dict(
        data_root=str(work/'data'), protocol=TINY, k_min=2, k_max=4, n_init=3, n_montage=8, umap_pca=20,
        out_dir=str(work/'figs')))
    nb.metadata['kernelspec'] = {'name': 'slsr_nb', 'display_name': 'Python (slsr_nb)', 'language': 'python'}
    nbformat.write(nb, work/'explorer.ipynb')
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
    base = f'http://127.0.0.1:{port}'
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f'{base}/api/status?token={token}', timeout=2); break
        except Exception:
            if proc.poll() is not None: break
            time.sleep(0.5)
    else:
        proc.terminate(); pytest.fail(f'JupyterLab did not start:\n{(work/"lab.log").read_text()[-3000:]}')
    if proc.poll() is not None: pytest.fail(f'JupyterLab exited:\n{(work/"lab.log").read_text()[-3000:]}')
    yield dict(base=base, token=token, work=work)
    try:
        req = urllib.request.Request(f'{base}/api/shutdown', method='POST', headers={'Authorization': f'token {token}'})
        urllib.request.urlopen(req, timeout=10)
        proc.wait(timeout=30)
    except Exception:
        proc.terminate()
        try: proc.wait(timeout=10)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
    log.close()


def _images(page):
    "The sources of the images in the explorer's output widget (scatter first, then montage)."
    return page.evaluate('''() => Array.from(document.querySelectorAll('.widget-output img')).map(i => i.src)''')


def _wait_change(page, before, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        now = _images(page)
        if len(now) >= 2 and now != before: return now
        page.wait_for_timeout(300)
    raise AssertionError(f'the explorer did not redraw within {timeout}s')


def _accept_kernel_dialog(page, wait_ms=3000):
    "JupyterLab may ask which kernel to start; the preselected one is the notebook's (slsr_nb)."
    try: page.wait_for_selector('.jp-Dialog', timeout=wait_ms)
    except Exception: return
    if page.locator('.jp-Dialog').filter(has_text='Select Kernel').count():
        page.locator('.jp-Dialog button.jp-mod-accept').first.click()
        page.wait_for_selector('.jp-Dialog', state='detached', timeout=10_000)


def _text(page):
    return page.locator('.widget-output').first.inner_text()


def test_explorer_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright
    ART.mkdir(parents=True, exist_ok=True)
    outside = []
    with sync_playwright() as p:
        # a fresh profile folder for this run (Playwright passes it as --user-data-dir)
        ctx = p.chromium.launch_persistent_context(str(lab['work']/'chromium-profile'), executable_path=CHROMIUM,
                                                   args=FLAGS, viewport={'width': 1400, 'height': 1000})
        def route(r):
            if r.request.url.startswith(('data:', 'blob:', lab['base'], 'ws://127.0.0.1')): return r.continue_()
            outside.append(r.request.url); return r.abort()
        ctx.route('**/*', route)
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        try:
            page.goto(f'{lab["base"]}/lab/tree/explorer.ipynb?token={lab["token"]}', wait_until='domcontentloaded')
            page.wait_for_selector('.jp-Notebook .jp-Cell', timeout=60_000)
            _accept_kernel_dialog(page)
            page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=60_000)
            page.screenshot(path=str(ART/'0_opened.png'))
            page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
            page.locator('.lm-Menu-itemLabel', has_text='Run All Cells').first.click()
            _accept_kernel_dialog(page)
            page.wait_for_selector('.widget-dropdown select', timeout=180_000)
            first = _wait_change(page, [], timeout=120)
            page.locator('.widget-output').first.scroll_into_view_if_needed()
            page.screenshot(path=str(ART/'1_first_view.png'))
            text0 = _text(page)
            assert 'Cluster 0' in text0, text0
            k_sel, c_sel = page.locator('.widget-dropdown select').nth(0), page.locator('.widget-dropdown select').nth(1)
            k0 = int(k_sel.input_value())
            assert c_sel.locator('option').count() == k0
            # another cluster: the scatter highlights other points and the montage shows other images
            c_sel.select_option(index=1)
            second = _wait_change(page, first)
            assert second[0] != first[0] and second[-1] != first[-1]
            assert 'Cluster 1' in _text(page)
            page.screenshot(path=str(ART/'2_cluster_1.png'))
            # another k: the cluster menu is rebuilt with k entries and the views redraw
            k1 = next(int(v) for v in k_sel.locator('option').all_inner_texts() if int(v) != k0)
            k_sel.select_option(str(k1))
            third = _wait_change(page, second)
            deadline = time.time() + 30
            while c_sel.locator('option').count() != k1 and time.time() < deadline: page.wait_for_timeout(200)
            assert c_sel.locator('option').count() == k1
            assert f'k={k1}' in _text(page) and third != second
            page.screenshot(path=str(ART/'3_k_changed.png'))
            errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
            assert not any('Traceback' in e or 'Error' in e for e in errors), errors
        except Exception:
            page.screenshot(path=str(ART/'failure.png'))
            raise
        finally:
            ctx.close()
    assert (lab['work']/'figs'/'silhouette.png').is_file()
    assert not outside, f'the browser tried to reach the internet: {sorted(set(outside))[:5]}'
