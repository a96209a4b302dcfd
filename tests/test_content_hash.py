"""Content hashes of artifacts and input files (crystallize.fingerprint.content)."""

from __future__ import annotations

from pathlib import Path

import pytest
from blake3 import blake3

from crystallize.fingerprint.content import CONTENT_HASH, bytes_digest, digest_while, file_digest

MIB = 1 << 20


def test_known_answers() -> None:
    # BLAKE3 of the empty input, from the BLAKE3 specification's test vectors
    assert bytes_digest(b"") == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert CONTENT_HASH == "blake3"


@pytest.mark.parametrize("size", [0, 1, MIB - 1, MIB, MIB + 1, 3 * MIB + 7])
def test_file_bytes_and_overlapped_write_agree(tmp_path: Path, size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    expected = blake3(data).hexdigest()
    target = tmp_path / "a.bin"
    assert digest_while(data, lambda: target.write_bytes(data)) == expected
    assert target.read_bytes() == data
    assert file_digest(target) == file_digest(target, mapped=True) == expected
    assert bytes_digest(memoryview(data)) == expected


@pytest.mark.parametrize("size", [10, 2 * MIB])
def test_a_failing_write_raises_after_the_hash(size: int) -> None:
    def fail() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        digest_while(b"z" * size, fail)


def test_missing_file_is_named(tmp_path: Path) -> None:
    for mapped in (False, True):
        with pytest.raises(FileNotFoundError, match="nope.bin"):
            file_digest(tmp_path / "nope.bin", mapped=mapped)
