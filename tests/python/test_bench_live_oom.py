"""vidkv bench --live when a shape runs out of device memory (vidkv.bench_live._shapes, _guard_memory,
_is_out_of_memory), without torch or a GPU: the failed shape gets one "not measured" row and a note saying where and
with what memory, its memory is released once, the shapes before and after it are measured, and other errors are
not swallowed."""
import pytest

from vidkv.bench_live import _OutOfMemory, _guard_memory, _is_out_of_memory, _shapes


class OutOfMemoryError(RuntimeError):
    """Named as torch.cuda.OutOfMemoryError is (the check goes by the class name: no torch import needed)."""


class _NoCudaTorch:
    """A torch module stand-in whose memory queries fail, as on a machine without CUDA (_memory_state's fallback)."""

    class cuda:  # noqa: N801 (torch's spelling)
        @staticmethod
        def mem_get_info():
            raise RuntimeError("no CUDA")


def test_out_of_memory_errors_are_recognised_by_type_name_or_message():
    assert _is_out_of_memory(OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert _is_out_of_memory(RuntimeError("cudaMallocAsync (16777216 bytes): out of memory"))  # _vidkv.CudaError's text
    assert _is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    assert not _is_out_of_memory(ValueError("tokens must be positive"))
    assert not _is_out_of_memory(RuntimeError("CUDA error: an illegal memory access was encountered"))


def test_guard_turns_out_of_memory_into_one_error_naming_the_run_and_leaves_others_alone():
    def oom():
        raise RuntimeError("cudaMallocAsync (16777216 bytes): out of memory\nmore detail")

    with pytest.raises(_OutOfMemory) as e:
        _guard_memory(_NoCudaTorch, "VidKVCache kivi-2 fused's run", oom)
    assert e.value.where == "VidKVCache kivi-2 fused's run"
    assert e.value.message == "cudaMallocAsync (16777216 bytes): out of memory"  # the first line only
    assert e.value.state == "memory state unavailable (RuntimeError)"

    def bad():
        raise ValueError("not a memory problem")

    with pytest.raises(ValueError, match="not a memory problem"):
        _guard_memory(_NoCudaTorch, "x", bad)
    assert _guard_memory(_NoCudaTorch, "x", lambda: 42) == 42


def test_a_shape_out_of_memory_is_reported_released_and_the_others_still_run(capsys):
    measured, released = [], []

    def measure(tokens, batch):
        measured.append((tokens, batch))
        if (tokens, batch) == (32768, 8):
            raise _OutOfMemory("VidKVCache vidkv-k1.5-v1.58 fused's run (prefill and decode steps)",
                               RuntimeError("cudaMallocAsync (16777216 bytes): out of memory"),
                               "torch allocated 60.0 GiB and reserved 70.0 GiB; the device had 0.1 of 79.2 GiB free")
        return f"note {tokens} x {batch}"

    notes, failed = _shapes([32768, 65536], [1, 8], measure, lambda: released.append(len(measured)))
    # every shape tried, in order; the release right after the failed one (the second of four)
    assert measured == [(32768, 1), (32768, 8), (65536, 1), (65536, 8)]
    assert released == [2]
    assert failed == ["32768 tokens x batch 8"]
    assert notes[0] == "note 32768 x 1" and notes[2:] == ["note 65536 x 1", "note 65536 x 8"]
    assert notes[1].startswith("32768 tokens, batch 8: NOT MEASURED, out of device memory in VidKVCache "
                               "vidkv-k1.5-v1.58 fused's run (prefill and decode steps) (cudaMallocAsync "
                               "(16777216 bytes): out of memory); then torch allocated 60.0 GiB")
    row = capsys.readouterr().out.strip()
    assert row == "| 32768 | 8 | not measured: out of device memory (below) |" + " - |" * 9
    assert row.count("|") == 13  # the table's 12 columns


def test_an_out_of_memory_error_outside_the_guarded_runs_is_reported_too_and_other_errors_propagate(capsys):
    def measure(tokens, batch):
        if batch == 8:  # e.g. the prompts' tensor on the device
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return f"note {tokens} x {batch}"

    notes, failed = _shapes([8192], [1, 8], measure, lambda: None, lambda: "the device had 0.5 of 79.2 GiB free")
    assert failed == ["8192 tokens x batch 8"]
    assert notes[1] == ("8192 tokens, batch 8: NOT MEASURED, out of device memory in the shape's setup or report "
                        "(prompts, cache sizes) (CUDA out of memory. Tried to allocate 1.00 GiB); then the device had "
                        "0.5 of 79.2 GiB free. Every cache of a shape is held at once for the timing: fewer --batches "
                        "or --tokens, or --prefill-chunk (a lower prefill peak), fit.")

    def broken(tokens, batch):
        raise KeyError("a bug, not memory")

    with pytest.raises(KeyError):
        _shapes([8192], [1], broken, lambda: None)
