"""The flash weight file: round trip, rejection of damaged or mismatched files, real reads."""

import os

import numpy as np
import pytest

from teachkit.sparse.compute.bundles import quantize_int8
from teachkit.sparse.flash.format import FlashFile, FlashFormatError, FlashSpec, write_flash
from teachkit.sparse.flash.reader import FlashReader, FlashReadError, runs


def _layers(spec, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((spec.n_neurons, spec.n_mats, spec.d)).astype(np.float32)
            for _ in range(spec.n_layers)]


@pytest.mark.parametrize("layout", ["bundled", "matrix"])
@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_round_trip(tmp_path, layout, dtype):
    spec = FlashSpec(n_layers=2, n_neurons=10, n_mats=3, d=16, dtype=dtype, layout=layout, align=64)
    layers = _layers(spec)
    data = layers if dtype == "float32" else [quantize_int8(b) for b in layers]
    write_flash(tmp_path / "w.bin", spec, iter(data))
    f = FlashFile(tmp_path / "w.bin", expect=spec)
    assert f.spec == spec
    for layer, want in enumerate(data):
        got = f.read_layer(layer)
        if dtype == "float32":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


def test_units_are_aligned_and_padded(tmp_path):
    spec = FlashSpec(n_layers=1, n_neurons=3, n_mats=2, d=10, align=128)
    assert spec.payload_bytes() == 80 and spec.stride == 128
    write_flash(tmp_path / "w.bin", spec, _layers(spec))
    f = FlashFile(tmp_path / "w.bin")
    assert f.data_offset % 128 == 0
    assert all(f.offset(0, i) % 128 == 0 for i in range(3))
    assert os.path.getsize(tmp_path / "w.bin") == f.data_offset + 3 * 128


def test_truncated_file_is_rejected(tmp_path):
    spec = FlashSpec(n_layers=2, n_neurons=8, n_mats=3, d=16, align=64)
    p = write_flash(tmp_path / "w.bin", spec, _layers(spec))
    size = os.path.getsize(p)
    os.truncate(p, size - 64)
    with pytest.raises(FlashFormatError, match="truncated"):
        FlashFile(p)
    os.truncate(p, 10)
    with pytest.raises(FlashFormatError, match="truncated"):
        FlashFile(p)


def test_corrupt_data_and_header_are_rejected(tmp_path):
    spec = FlashSpec(n_layers=2, n_neurons=8, n_mats=3, d=16, align=64)
    p = write_flash(tmp_path / "w.bin", spec, _layers(spec))
    f = FlashFile(p)
    raw = bytearray(p.read_bytes())
    raw[f.offset(1, 5) + 3] ^= 0xFF                    # one flipped byte in layer 1
    p.write_bytes(bytes(raw))
    with pytest.raises(FlashFormatError, match="layer 1 is corrupt"):
        FlashFile(p)
    FlashFile(p, verify=False)                          # header checks alone still pass
    raw[30] ^= 0xFF                                     # inside the JSON header
    p.write_bytes(bytes(raw))
    with pytest.raises(FlashFormatError, match="header"):
        FlashFile(p, verify=False)
    raw[:8] = b"NOTFLASH"
    p.write_bytes(bytes(raw))
    with pytest.raises(FlashFormatError, match="magic"):
        FlashFile(p)


def test_mismatched_model_is_rejected(tmp_path):
    spec = FlashSpec(n_layers=2, n_neurons=8, n_mats=3, d=16, align=64)
    p = write_flash(tmp_path / "w.bin", spec, _layers(spec))
    with pytest.raises(FlashFormatError, match="d = 16 in the file, but 32 expected"):
        FlashFile(p, expect={"d": 32})
    other = FlashSpec(n_layers=2, n_neurons=8, n_mats=2, d=16, align=64)
    with pytest.raises(FlashFormatError, match="n_mats"):
        FlashFile(p, expect=other)


def test_writer_checks_shapes(tmp_path):
    spec = FlashSpec(n_layers=2, n_neurons=8, n_mats=3, d=16)
    with pytest.raises(ValueError, match="shape"):
        write_flash(tmp_path / "w.bin", spec, [np.zeros((8, 2, 16), np.float32)] * 2)
    with pytest.raises(ValueError, match="got 1 layers"):
        write_flash(tmp_path / "w.bin", spec, [np.zeros((8, 3, 16), np.float32)])
    assert not (tmp_path / "w.bin").exists()
    with pytest.raises(ValueError, match="n_mats"):
        FlashSpec(n_layers=1, n_neurons=1, n_mats=4, d=1)


def test_runs_splits_consecutive_ids():
    assert runs(np.array([1, 2, 3, 7, 9, 10])) == [(0, 3), (3, 1), (4, 2)]
    assert runs(np.array([], dtype=np.int64)) == []


@pytest.mark.parametrize("direct", [False, True])
def test_reader_reads_exact_units(tmp_path, direct):
    spec = FlashSpec(n_layers=2, n_neurons=12, n_mats=2, d=1024 if direct else 20,
                     align=4096 if direct else 64)
    layers = _layers(spec, seed=3)
    f = FlashFile(write_flash(tmp_path / "w.bin", spec, layers))
    try:
        r = FlashReader(f, max_units=8, direct=direct)
    except ValueError as err:
        pytest.skip(str(err))                            # tmpfs and friends refuse O_DIRECT
    with r:
        ids = np.array([0, 1, 2, 5, 11], dtype=np.int64)
        raw = r.read(1, ids)
        np.testing.assert_array_equal(f.decode(raw), layers[1][ids])
        assert r.n_reads == 3                            # runs [0,1,2], [5], [11]
        assert r.bytes_read == 5 * spec.stride
        raw = r.read(0, ids, coalesce=False, lo=0, hi=spec.stride)
        assert r.n_reads == 8
        with pytest.raises(ValueError, match="staging"):
            r.read(0, np.arange(9))


def test_reader_raises_on_failure_and_short_read(tmp_path):
    spec = FlashSpec(n_layers=1, n_neurons=4, n_mats=2, d=8, align=64)
    f = FlashFile(write_flash(tmp_path / "w.bin", spec, _layers(spec)))

    def fault(n):
        if n >= 1:
            raise FlashReadError("injected disk error")

    with FlashReader(f, max_units=4, direct=False, fault=fault) as r:
        r.read(0, np.array([0], dtype=np.int64))
        with pytest.raises(FlashReadError, match="injected"):
            r.read(0, np.array([2], dtype=np.int64))
    r = FlashReader(f, max_units=4, direct=False)
    os.truncate(f.path, f.offset(0, 3) + 10)            # the file shrinks under the reader
    with pytest.raises(FlashReadError, match="short read"):
        r.read(0, np.array([3], dtype=np.int64))
    r.close()


def test_reader_falls_back_where_o_direct_is_refused(tmp_path, monkeypatch):
    from teachkit.sparse.flash import platform_io

    spec = FlashSpec(n_layers=1, n_neurons=4, n_mats=2, d=1024, align=4096)
    f = FlashFile(write_flash(tmp_path / "w.bin", spec, _layers(spec)))
    real_open = platform_io.open_uncached              # as on tmpfs: O_DIRECT refused, a plain open instead
    monkeypatch.setattr(platform_io, "open_uncached", lambda path, direct=True: real_open(path, False))
    with FlashReader(f, max_units=4) as r:                 # direct=None: falls back to buffered reads
        assert r.direct is False and r.how in ("buffered+drop", "buffered", "F_NOCACHE")
        assert f.decode(r.read(0, np.array([1, 2]))).shape == (2, 2, 1024)
    with pytest.raises(ValueError, match="without O_DIRECT"):
        FlashReader(f, max_units=4, direct=True)


def _rewrite_header(p, edit=None, version=None):
    """Rewrite the JSON header of ``p`` (with a valid crc) after ``edit(meta)``; same length kept by padding."""
    import json
    import struct
    import zlib

    raw = bytearray(p.read_bytes())
    magic, ver, hlen, _ = struct.unpack("<8sIII", raw[:20])
    meta = json.loads(bytes(raw[20:20 + hlen]))
    if edit is not None:
        edit(meta)
    head = json.dumps(meta, sort_keys=True).encode()
    raw[:20 + len(head)] = struct.pack("<8sIII", magic, version or ver, len(head), zlib.crc32(head)) + head
    p.write_bytes(bytes(raw))


def test_other_version_missing_key_and_unknown_expect_are_format_errors(tmp_path):
    spec = FlashSpec(n_layers=2, n_neurons=8, n_mats=3, d=16, align=64)
    p = write_flash(tmp_path / "w.bin", spec, _layers(spec))
    with pytest.raises(FlashFormatError, match="cannot check 'width'"):
        FlashFile(p, expect={"width": 16})
    _rewrite_header(p, version=2)
    with pytest.raises(FlashFormatError, match="format version 2, this code reads 1"):
        FlashFile(p)
    p = write_flash(tmp_path / "w.bin", spec, _layers(spec))
    _rewrite_header(p, edit=lambda m: m.pop("layer_crc32"))       # valid crc, missing key
    with pytest.raises(FlashFormatError, match="does not describe a valid file"):
        FlashFile(p)
    p = write_flash(tmp_path / "w.bin", spec, _layers(spec))
    _rewrite_header(p, edit=lambda m: m.update(n_mats=7))
    with pytest.raises(FlashFormatError, match="n_mats"):
        FlashFile(p)


def _fs_type(path) -> str:
    best, kind = "", ""
    for line in open("/proc/self/mounts"):
        _, mnt, fs = line.split()[:3]
        if str(path).startswith(mnt) and len(mnt) > len(best):
            best, kind = mnt, fs
    return kind


def test_page_cache_stays_cold_after_write_verify_and_buffered_reads(tmp_path):
    from teachkit.sparse.flash import platform_io
    from teachkit.sparse.flash.platform_io import cached_pages

    if not (platform_io.CAPS.fadvise and platform_io.CAPS.mincore):
        pytest.skip("needs posix_fadvise and mincore (missing or hidden on this platform): "
                    "pages cannot be dropped or counted")
    spec = FlashSpec(n_layers=2, n_neurons=400, n_mats=3, d=16, align=64)   # units share pages
    p = write_flash(tmp_path / "w.bin", spec, _layers(spec))
    if _fs_type(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip("on tmpfs the page cache *is* the file")
    assert cached_pages(p) == 0, "write_flash left the file in the page cache"
    f = FlashFile(p, verify=True)
    assert cached_pages(p) == 0, "verify() left the file in the page cache"
    rng = np.random.default_rng(0)
    with FlashReader(f, 8, direct=False) as r:
        for _ in range(50):
            r.read(int(rng.integers(2)), np.sort(rng.choice(400, 3, replace=False)))
    assert cached_pages(p) == 0, "buffered reads left partial pages cached"
