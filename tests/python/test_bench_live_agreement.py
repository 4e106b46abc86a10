"""vidkv bench --live's teacher-forced agreement columns (vidkv.bench_live._Reference / _Agreement), on hand-made
logits: which positions agree, the relative logit error and the smallest reference margin among disagreements."""
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: run scripts/setup.sh --models")

from vidkv.bench_live import _Agreement, _Reference  # noqa: E402


def test_agreement_counts_positions_error_and_margin():
    ref = _Reference()
    ref.add(torch.tensor([3.0, 1.0, 0.0]))   # token 0, top-2 margin 2
    ref.add(torch.tensor([0.0, 2.0, 1.9]))   # token 1, margin 0.1 (a near-tie)
    ref.add(torch.tensor([-1.0, 0.5, 1.5]))  # token 2, margin 1
    assert ref.tokens == [0, 1, 2]
    assert ref.margin == pytest.approx([2.0, 0.1, 1.0])
    cache = _Agreement(ref)
    cache.add(0, torch.tensor([2.9, 1.0, 0.0]))    # agrees; error 0.1
    cache.add(1, torch.tensor([0.0, 1.8, 1.95]))   # flips the near-tie: error 0.2 (entry 1), margin 0.1 recorded
    cache.add(2, torch.tensor([-1.0, 0.5, 1.25]))  # agrees; error 0.25 (entry 2)
    assert cache.agree == 2
    assert cache.margin == pytest.approx(0.1)
    # the largest |difference| (0.25) over the largest |reference logit| (3)
    assert cache.error == pytest.approx(0.25 / 3.0)


def test_identical_logits_agree_everywhere_with_zero_error():
    ref = _Reference()
    rows = [torch.tensor([0.5, -2.0, 0.25]), torch.tensor([1.0, 4.0, -4.0])]
    for r in rows:
        ref.add(r)
    cache = _Agreement(ref)
    for j, r in enumerate(rows):
        cache.add(j, r.clone())
    assert (cache.agree, cache.error, cache.margin) == (2, 0.0, None)
