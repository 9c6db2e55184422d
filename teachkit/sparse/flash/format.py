"""The flash weight file: FFN neurons stored neuron-major in aligned bundles, with a header.

PowerInfer-2 (§4.4) stores the i-th gate row, up row and down column of a layer next to each
other, so one active neuron costs **one** random read instead of three. This file does the
same for every FFN layer of a model::

    offset 0         MAGIC (8 B) | version u32 | header length u32 | header crc32 u32
    offset 20        JSON header (shapes, dtype, layout, align, offsets, crc32 of every layer)
    data_offset      layer 0: unit 0 | pad | unit 1 | pad | ...      (every unit starts aligned)
    + layer_bytes    layer 1: ...

``layout="bundled"``: unit i = neuron i = all ``n_mats`` rows ``[gate_i | up_i | down_i]``.
``layout="matrix"``:  unit (m, i) = row i of matrix m alone (the llama.cpp-style layout; a
neuron then costs ``n_mats`` separate reads). Used by the ablation's "no bundle" rung.

A unit's payload is ``float32 (rows, d)`` for ``dtype="float32"``, and
``float32 scales (rows,) | int8 (rows, d)`` for ``dtype="int8"`` (scales first, so the gate
part of an int8 bundle is one prefix). Units are padded to ``stride = round_up(payload, align)``
bytes: with ``align=4096`` every read is O_DIRECT-able (offset, length and buffer aligned).

A file that is truncated, corrupt (crc32 mismatch) or made for another model raises
:class:`FlashFormatError` with a message saying which; nothing is silently misread.

The header's checksums cover whole layers, checked once when a file is opened. For a check of
every read (a disk that returns bad bytes later, a file overwritten while in use),
:meth:`FlashFile.unit_crcs` derives each unit's crc32 from a verified pass and
:meth:`FlashFile.first_bad_unit` compares read bytes with it (``check_reads=True`` in the
engine; it costs one crc32 pass over every byte read).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import platform_io

__all__ = ["FlashSpec", "FlashFile", "FlashFormatError", "write_flash", "MAGIC", "VERSION"]

MAGIC = b"TKFLASH\x00"
VERSION = 1
_PREFIX = struct.Struct("<8sIII")          # magic, version, header length, header crc32
CRC = np.dtype(np.uint32)                  # a crc32, as the per-unit table (FlashFile.unit_crcs) holds it


class FlashFormatError(ValueError):
    """The weight file is truncated, corrupt, of another version, or made for another model."""


def round_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


@dataclass(frozen=True)
class FlashSpec:
    """Shapes of the FFN weights a file holds (and that an engine expects)."""

    n_layers: int
    n_neurons: int
    n_mats: int            # 3 = gated [gate|up|down], 2 = plain [up|down]
    d: int
    dtype: str = "float32"  # "float32" or "int8" (+ one float32 scale per row)
    layout: str = "bundled"  # "bundled" or "matrix"
    align: int = 4096

    def __post_init__(self):
        for name in ("n_layers", "n_neurons", "d", "align"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_mats not in (2, 3):
            raise ValueError(f"n_mats must be 2 (plain [up|down]) or 3 (gated), got {self.n_mats}")
        if self.dtype not in ("float32", "int8"):
            raise ValueError(f"dtype must be 'float32' or 'int8', got {self.dtype!r}")
        if self.layout not in ("bundled", "matrix"):
            raise ValueError(f"layout must be 'bundled' or 'matrix', got {self.layout!r}")
        if self.align & (self.align - 1):
            raise ValueError(f"align must be a power of two, got {self.align}")

    # ---- geometry -------------------------------------------------------------------
    @property
    def rows_per_unit(self) -> int:
        return self.n_mats if self.layout == "bundled" else 1

    def payload_bytes(self, rows: int | None = None) -> int:
        """Bytes of ``rows`` rows of one unit (scales included for int8)."""
        rows = self.rows_per_unit if rows is None else rows
        return rows * self.d * (4 if self.dtype == "float32" else 1) + (4 * rows if self.dtype == "int8" else 0)

    @property
    def stride(self) -> int:
        return round_up(self.payload_bytes(), self.align)

    @property
    def units_per_layer(self) -> int:
        return self.n_neurons * (1 if self.layout == "bundled" else self.n_mats)

    @property
    def layer_bytes(self) -> int:
        return self.units_per_layer * self.stride

    @property
    def bundle_bytes(self) -> int:
        """Useful bytes of one neuron (all its rows), excluding padding."""
        return self.payload_bytes(self.n_mats)

    @property
    def ffn_bytes(self) -> int:
        """Useful FFN bytes of the whole model (what a dense engine must stream per token)."""
        return self.n_layers * self.n_neurons * self.bundle_bytes

    def unit_offset(self, data_offset: int, layer: int, neuron: int, mat: int = 0) -> int:
        unit = neuron if self.layout == "bundled" else mat * self.n_neurons + neuron
        return data_offset + layer * self.layer_bytes + unit * self.stride


def _header_bytes(spec: FlashSpec, crcs: list[int], data_offset: int) -> bytes:
    head = dict(asdict(spec), stride=spec.stride, layer_bytes=spec.layer_bytes,
                data_offset=data_offset, layer_crc32=crcs)
    return json.dumps(head, sort_keys=True).encode()


def _encode_units(spec: FlashSpec, bundles) -> np.ndarray:
    """One layer's weights as a uint8 array (units_per_layer, stride), padding zeroed."""
    if spec.dtype == "int8":
        if not (isinstance(bundles, tuple) and len(bundles) == 2):
            raise TypeError("an int8 layer is a tuple (q int8 (n, n_mats, d), scales float32 (n, n_mats))")
        q, s = bundles
        q = np.asarray(q)
        s = np.asarray(s, dtype=np.float32)
        if q.dtype != np.int8:
            raise TypeError(f"q must be int8, got {q.dtype}")
    else:
        q = np.asarray(bundles)
        if q.dtype != np.float32:
            raise TypeError(f"float32 file: bundles must be float32, got {q.dtype}")
        s = None
    want = (spec.n_neurons, spec.n_mats, spec.d)
    if q.shape != want:
        raise ValueError(f"layer weights must have shape {want}, got {q.shape}")
    if s is not None and s.shape != want[:2]:
        raise ValueError(f"scales must have shape {want[:2]}, got {s.shape}")
    if spec.layout == "matrix":      # unit (m, i) = row i of matrix m
        q = np.ascontiguousarray(q.transpose(1, 0, 2)).reshape(-1, 1, spec.d)
        s = None if s is None else np.ascontiguousarray(s.T).reshape(-1, 1)
    out = np.zeros((spec.units_per_layer, spec.stride), dtype=np.uint8)
    rows = spec.rows_per_unit
    if s is None:
        out[:, :spec.payload_bytes()] = q.reshape(len(out), -1).view(np.uint8)
    else:
        out[:, :4 * rows] = np.ascontiguousarray(s.reshape(len(out), rows)).view(np.uint8)
        out[:, 4 * rows:spec.payload_bytes()] = q.reshape(len(out), -1).view(np.uint8)
    return out


def write_flash(path, spec: FlashSpec, layers) -> Path:
    """Write ``layers`` (an iterable of per-layer bundles, or ``(q, scales)`` for int8).

    Layers are consumed one at a time, so a file far larger than RAM can be written from a
    generator. The header (with every layer's crc32) is written last, at offset 0, and the
    file only appears under its name once it is complete.
    """
    path = Path(path)
    reserve = round_up(_PREFIX.size + len(_header_bytes(spec, [0xFFFFFFFF] * spec.n_layers, 10**15)) + 64,
                       spec.align)
    tmp = path.with_name(path.name + ".partial")
    crcs = []
    with open(tmp, "wb") as f:
        f.write(b"\0" * reserve)
        for layer in layers:
            if len(crcs) == spec.n_layers:
                raise ValueError(f"got more layers than spec.n_layers = {spec.n_layers}")
            block = _encode_units(spec, layer)
            crcs.append(zlib.crc32(block))
            f.write(block.data)
        if len(crcs) != spec.n_layers:
            raise ValueError(f"got {len(crcs)} layers, spec says {spec.n_layers}")
        head = _header_bytes(spec, crcs, reserve)
        f.seek(0)
        f.write(_PREFIX.pack(MAGIC, VERSION, len(head), zlib.crc32(head)) + head)
        f.flush()
        os.fsync(f.fileno())                    # written pages are dirty: they can only be dropped once on disk
        platform_io.drop_cache(f.fileno())      # where the platform can (see platform_io)
    os.replace(tmp, path)
    return path


class FlashFile:
    """An open, validated flash file. Reads go through :class:`~teachkit.sparse.flash.reader.FlashReader`.

    ``FlashFile(path, expect=spec_or_dict, verify=True)`` checks magic, version, header crc,
    file size (truncation), every layer's crc32 (``verify``) and that the shapes match
    ``expect`` (a :class:`FlashSpec` or a dict of the fields that must agree).
    """

    def __init__(self, path, expect=None, verify: bool = True):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"flash file {self.path} does not exist; write it with write_flash()")
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            prefix = f.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size:
                raise FlashFormatError(f"{self.path}: truncated ({size} bytes), not even a header")
            magic, version, hlen, hcrc = _PREFIX.unpack(prefix)
            if magic != MAGIC:
                raise FlashFormatError(f"{self.path}: not a teachkit flash file (magic {magic!r})")
            if version != VERSION:
                raise FlashFormatError(f"{self.path}: format version {version}, this code reads {VERSION}; "
                                       "rewrite the file with write_flash()")
            head = f.read(hlen)
        if len(head) != hlen or zlib.crc32(head) != hcrc:
            raise FlashFormatError(f"{self.path}: header is corrupt or truncated (crc32 mismatch)")
        try:
            meta = json.loads(head)
            self.spec = FlashSpec(**{k: meta[k] for k in FlashSpec.__dataclass_fields__})
            self.data_offset = int(meta["data_offset"])
            self.layer_crc32 = [int(c) for c in meta["layer_crc32"]]
        except (ValueError, KeyError, TypeError) as err:
            raise FlashFormatError(f"{self.path}: the header does not describe a valid file "
                                   f"({type(err).__name__}: {err})") from None
        if len(self.layer_crc32) != self.spec.n_layers or self.data_offset < _PREFIX.size + hlen:
            raise FlashFormatError(f"{self.path}: the header is inconsistent (layer checksums or data offset)")
        want = self.data_offset + self.spec.n_layers * self.spec.layer_bytes
        if size != want:
            raise FlashFormatError(f"{self.path}: {size} bytes on disk but the header describes {want}: "
                                   f"the file is {'truncated' if size < want else 'too long'}")
        self._unit_crcs = None
        if expect is not None:
            self.check_matches(expect)
        if verify:
            self.verify()

    def check_matches(self, expect) -> None:
        want = asdict(expect) if isinstance(expect, FlashSpec) else dict(expect)
        for key, value in want.items():
            if key not in FlashSpec.__dataclass_fields__:
                raise FlashFormatError(f"cannot check {key!r}: a flash file records "
                                       f"{', '.join(FlashSpec.__dataclass_fields__)}")
            got = getattr(self.spec, key)
            if got != value:
                raise FlashFormatError(f"{self.path}: made for another model: {key} = {got} in the file, "
                                       f"but {value} expected")

    def verify(self) -> None:
        """Recompute each layer's crc32 (reads the whole file once)."""
        self._scan(units=False)

    def unit_crcs(self) -> np.ndarray:
        """crc32 of every unit (all ``stride`` bytes): uint32 ``(n_layers, units_per_layer)``.

        Made by one pass over the file that also checks every layer's crc32 against the header,
        so the table describes the file as written; kept after the first call. A per-read check
        (:meth:`first_bad_unit`) compares what a read brought back against it.
        """
        if self._unit_crcs is None:
            self._unit_crcs = self._scan(units=True)
        return self._unit_crcs

    @staticmethod
    def unit_crcs_nbytes(spec: FlashSpec) -> int:
        """Bytes of the table :meth:`unit_crcs` allocates: one crc32 per unit."""
        return spec.n_layers * spec.units_per_layer * CRC.itemsize

    def first_bad_unit(self, layer: int, units, raw: np.ndarray, rows=None) -> int:
        """Index j of the first ``units[j]`` whose bytes (row ``rows[j]`` of ``raw``, uint8 ``(·, stride)``)
        do not match :meth:`unit_crcs`; -1 if all match. Costs one crc32 pass over the bytes."""
        table = self.unit_crcs()[layer]
        units = np.asarray(units).tolist()
        rows = range(len(units)) if rows is None else np.asarray(rows).tolist()
        for j, (u, r) in enumerate(zip(units, rows)):
            if zlib.crc32(raw[r]) != table[u]:
                return j
        return -1

    def _scan(self, units: bool):
        """Check every layer's crc32; with ``units``, also return every unit's crc32."""
        s = self.spec
        per = max(1, (16 << 20) // s.stride) * s.stride            # whole units per read
        table = np.zeros((s.n_layers, s.units_per_layer), CRC) if units else None
        buf = bytearray(per)
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self.data_offset)
            for layer, want in enumerate(self.layer_crc32):
                crc, left, u = 0, s.layer_bytes, 0
                while left:
                    n = min(left, per)
                    view = memoryview(buf)[:n]
                    got = 0
                    while got < n and (k := f.readinto(view[got:])):
                        got += k
                    if got < n:
                        raise FlashFormatError(f"{self.path}: truncated inside layer {layer}")
                    crc = zlib.crc32(view, crc)
                    left -= n
                    if units:
                        for a in range(0, n, s.stride):
                            table[layer, u] = zlib.crc32(view[a:a + s.stride])
                            u += 1
                if crc != want:
                    raise FlashFormatError(f"{self.path}: layer {layer} is corrupt (crc32 mismatch)")
            platform_io.drop_cache(f.fileno())      # leave the page cache cold, where the platform can
        return table

    def offset(self, layer: int, neuron: int, mat: int = 0) -> int:
        return self.spec.unit_offset(self.data_offset, layer, neuron, mat)

    def __repr__(self) -> str:
        s = self.spec
        return (f"FlashFile({self.path.name}: {s.n_layers} layers x {s.n_neurons} neurons x "
                f"{s.n_mats}x{s.d} {s.dtype}, {s.layout}, stride {s.stride} B)")

    def decode(self, raw: np.ndarray, rows: int | None = None):
        """Turn raw units (k, stride) uint8 into float32 (k, rows, d) or (int8 (k, rows, d), scales (k, rows))."""
        s = self.spec
        rows = s.rows_per_unit if rows is None else rows
        k = raw.shape[0]
        if s.dtype == "float32":
            return np.ascontiguousarray(raw[:, :rows * s.d * 4]).view(np.float32).reshape(k, rows, s.d)
        scales = np.ascontiguousarray(raw[:, :4 * rows]).view(np.float32).reshape(k, rows)
        q = np.ascontiguousarray(raw[:, 4 * rows:4 * rows + rows * s.d]).view(np.int8).reshape(k, rows, s.d)
        return q, scales

    def read_layer(self, layer: int):
        """Read a whole layer (buffered, for tests and prefill): bundles as written."""
        s = self.spec
        if not 0 <= layer < s.n_layers:
            raise ValueError(f"layer must be in 0..{s.n_layers - 1}, got {layer}")
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self.offset(layer, 0))
            raw = f.read(s.layer_bytes)
            platform_io.drop_cache(f.fileno())
        if len(raw) != s.layer_bytes:
            raise FlashFormatError(f"{self.path}: short read in layer {layer}")
        units = np.frombuffer(raw, dtype=np.uint8).reshape(s.units_per_layer, s.stride)
        dec = self.decode(units)
        if s.layout == "bundled":
            return dec
        if s.dtype == "float32":
            return np.ascontiguousarray(dec.reshape(s.n_mats, s.n_neurons, s.d).transpose(1, 0, 2))
        q, sc = dec
        return (np.ascontiguousarray(q.reshape(s.n_mats, s.n_neurons, s.d).transpose(1, 0, 2)),
                np.ascontiguousarray(sc.reshape(s.n_mats, s.n_neurons).T))
