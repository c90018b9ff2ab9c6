"The real Market-1501 loads with every official count (file names only: no image is decoded). Skips where absent."
import warnings
import pytest
from slsr_nb.core import real_data_root, MARKET_MISSING
from slsr_nb.data.datasets import load_dataset, summarize

@pytest.fixture(scope='module')
def market():
    root = real_data_root()
    if root is None or not (root/'Market-1501-v15.09.15').is_dir(): pytest.skip(MARKET_MISSING)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # every query identity must have a cross-camera gallery match
        return load_dataset('market1501', root, verbose=False)

def test_train(market):
    assert len(market.train) == 12936
    assert market.n_train_pids == 751
    assert sorted({p for _, p, _ in market.train}) == list(range(751))  # relabeled 0..750
    assert {c for _, _, c in market.train} == set(range(6))

def test_gallery(market):
    pids = [p for _, p, _ in market.gallery]
    assert len(pids) == 19732
    assert pids.count(-1) == 3819 and pids.count(0) == 2798
    assert len({p for p in pids if p > 0}) == 750
    assert {c for _, _, c in market.gallery} == set(range(6))

def test_query(market):
    assert len(market.query) == 3368
    q = {p for _, p, _ in market.query}
    assert len(q) == 750 and min(q) > 0
    assert q == {p for _, p, _ in market.gallery if p > 0}  # the same 750 test identities

def test_summary_and_protocol(market):
    s = summarize(market, show=False)
    assert (s['train']['ids'], s['query']['ids'], s['gallery']['ids']) == (751, 750, 750)
    assert (s['gallery']['junk'], s['gallery']['distractors']) == (3819, 2798)
    assert market.n_cams == 6
    assert market.protocol['protocol'] == 'market-single-query' and market.protocol['dataset'] == 'market1501'
