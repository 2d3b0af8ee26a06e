"""Bounded reading: nothing is allocated from an MRC header's claims before the file size
proves them; a file larger than its header implies is read with a warning."""

import logging
import tracemalloc

import numpy as np
import pytest

from classavg.io import StackError, read_stack_header


def _peak_bytes(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_huge_extended_header_claim_fails_without_allocating(tmp_path, helpers):
    path = helpers.write_mrcs(tmp_path / "s.mrcs", np.zeros((4, 16, 16), np.float32))
    raw = bytearray(path.read_bytes())
    raw[92:96] = np.int32(2**31 - 1).tobytes()        # nsymbt: a 2 GiB extended header
    path.write_bytes(bytes(raw))

    def read():
        with pytest.raises(StackError, match="truncated.*2147483647 extended header"):
            read_stack_header(path)
    assert _peak_bytes(read) < 16 * 2**20


@pytest.mark.parametrize("text", ["root:x:0:0:root:/root:/bin/bash\n" * 60, "x" * 100])
def test_text_file_as_stack_fails_fast(tmp_path, text):
    path = tmp_path / "passwd"
    path.write_text(text)

    def read():
        with pytest.raises(StackError, match="passwd"):
            read_stack_header(path)
    assert _peak_bytes(read) < 16 * 2**20


def test_file_larger_than_its_header_warns(tmp_path, helpers, caplog):
    path = helpers.write_mrcs(tmp_path / "s.mrcs", np.zeros((2, 8, 8), np.float32))
    with open(path, "ab") as f:
        f.write(b"\0" * 4096)
    with caplog.at_level(logging.WARNING, logger="classavg.io.mrc"):
        hdr = read_stack_header(path)
    assert hdr.n == 2
    assert any("larger than its header" in r.getMessage() and "s.mrcs" in r.getMessage()
               for r in caplog.records)
