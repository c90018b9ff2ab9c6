"The GAN-variant comparison script (tests/bench/bench_gan_quality.py) runs end to end on a tiny synthetic set."
import importlib.util, json, sys
from pathlib import Path
import pytest

BENCH = Path(__file__).parent/'bench'/'bench_gan_quality.py'


def _bench():
    spec = importlib.util.spec_from_file_location('bench_gan_quality', BENCH)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_synthetic_smoke(tmp_path, capsys):
    out = tmp_path/'cmp'
    rc = _bench().main(['--synthetic', '--epochs', '1', '--n-ids', '12', '--k', '2', '--n-per-cluster', '8',
                        '--ngf', '8', '--ndf', '8', '--batch', '8', '--feature-size', '64x32',
                        '--variants', 'dcgan,stabilised', '--out', str(out)])
    assert rc == 0
    res = json.loads((out/'compare.json').read_text())
    assert sorted(res['variants']) == ['dcgan', 'stabilised'] and res['epochs'] == 1
    for v in ('dcgan', 'stabilised'):
        rows = res['variants'][v]['clusters']
        assert [r['cluster'] for r in rows] == [0, 1]
        assert all(0 <= r['consistency'] <= 1 and 0 <= r['recall'] <= 1 and r['kid_own_se'] >= 0 for r in rows)
        assert (out/v/'samples.png').is_file() and (out/v/'quality.json').is_file()
    printed = capsys.readouterr().out
    assert 'KID own' in printed and json.loads(printed.strip().splitlines()[-1]).keys() == {'dcgan', 'stabilised'}


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _bench().main(['--clusters', str(tmp_path), '--epochs', '1', '--out', str(tmp_path/'o')])
    assert '--clusters needs --model' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _bench().main(['--synthetic', '--epochs', '1', '--variants', 'wgan', '--out', str(tmp_path/'o')])
    assert "unknown variants ['wgan']" in capsys.readouterr().err
