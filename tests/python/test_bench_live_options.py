"""vidkv bench --live's own option checks (vidkv.bench_live._parse), without torch: bad batch lists, a negative
prefill chunk and --fused-only without --fused are usage errors; good values parse."""
import pytest

from vidkv.bench_live import _parse


@pytest.mark.parametrize("argv", [["--batches", "0"], ["--batches", "a,1"], ["--batches", ","], ["--prefill-chunk", "-1"],
                                  ["--fused-only"], ["--steps", "1"]])
def test_bad_live_options_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        _parse(["--live", *argv])
    assert e.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_live_options_parse():
    a = _parse(["--live", "--batches", "1,8,16", "--prefill-chunk", "4096", "--fused", "--fused-only", "--tokens", "32768"])
    assert a.batches == [1, 8, 16] and a.prefill_chunk == 4096 and a.fused_only and a.tokens == [32768]
    assert _parse([]).batches == [1] and _parse([]).prefill_chunk == 0
