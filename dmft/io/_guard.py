"""The guarded reading layer: every dmft reader (``load``, ``load_sweep``, ``load_features``,
``describe``) opens and reads files through here, so that a damaged or hostile file is refused
with one :class:`~dmft.DMFTInputError` naming the file, the place inside it and what is wrong,
never a raw Python or HDF5 exception, an exhausted memory or another file's data.

What is checked:

- links: a file may only hold hard links and soft links that resolve inside it. External links
  (which would read another file's data as this file's), soft links that loop, dangle or reach
  an external link, and user-defined links are refused, anywhere in the file, before anything
  is read. Datasets whose raw data live outside the file (external storage, virtual datasets)
  are refused when read.
- sizes: a dataset or attribute is read only if its declared size (shape x itemsize) fits the
  file (see :func:`read_limit`); the reads of one open file share that limit.
- dtypes: real numbers (float or integer) where numbers are expected, strings where strings
  are; compound, reference, opaque or complex data are refused.
- JSON: nesting deeper than :data:`MAX_JSON_DEPTH` is refused before ``json.loads`` (whose
  recursive decoder would otherwise raise RecursionError).
- ``format_version``: exactly two non-negative integers ``[major, minor]``.

Only numpy and h5py are imported (``import dmft.io`` stays free of JAX).
"""

from __future__ import annotations

import contextlib
import json
import math
import os

import h5py
import numpy as np

from .._errors import DMFTInputError

MAX_JSON_DEPTH = 64
# soft-link hops allowed while resolving one link: well under HDF5's own limit of 16 traversals
# per lookup, so that a chain accepted here also resolves when its target is read
MAX_SOFT_HOPS = 8
# The writers never compress, so a dataset of a valid dmft file is never larger than the file
# itself. Other tools may compress: gzip rarely beats 10x on floats and reaches ~1000x only on
# constant arrays. A declared size beyond max(64 MiB, 1000 x file size) is therefore not data
# that is in the file but an unallocated (fill-value) dataset or a forged shape. No absolute cap
# is added: a genuine large run (e.g. DMFT kernels at T = 1000, p = 32, about 8 GB) must load
# where the memory allows; where it does not, the read's MemoryError is reported instead.
_FLOOR_BYTES = 64 * 2**20
_RATIO = 1000

_NUMBER_KINDS = "iuf"
_EXPECTED = {
    "number": "a real-number (float or integer) array",
    "integer": "an integer array",
    "string": "a string array",
}


def read_limit(file_bytes: int) -> int:
    """The most bytes that may be read from a file of ``file_bytes`` on disk, all reads of one
    open file together (see the comment on ``_RATIO``)."""
    return max(_FLOOR_BYTES, _RATIO * int(file_bytes))


# --------------------------------------------------------------------------------------------
# Opening, links
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def open_file(path):
    """Open ``path`` read-only after checking its links; yield a :class:`Reader`."""
    path = os.fspath(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DMFTInputError(f"{path} cannot be read as HDF5: {first_line(exc)}") from None
    with f:
        check_links(path, f)
        yield Reader(path, f)


def check_links(path: str, f: h5py.File) -> None:
    """Refuse external links, user-defined links and soft links that loop, dangle or leave the
    file, anywhere in ``f`` (every link is visited once, without following any)."""
    links = []  # (name, type code)

    def visit(name: bytes):
        links.append((name, f.id.links.get_info(name).type))

    try:
        f.id.links.visit(visit)
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise DMFTInputError(f"{path}: its groups cannot be listed ({first_line(exc)}); the "
                             "file is damaged") from None
    for raw, code in links:
        name = "/" + raw.decode(errors="replace")
        if code == h5py.h5l.TYPE_HARD:
            continue
        if code == h5py.h5l.TYPE_EXTERNAL:
            filename, target = f.id.links.get_val(raw)
            raise DMFTInputError(
                f"{path}: {name} is an external link to {_text(target)!r} in the file "
                f"{_text(filename)!r}; a dmft file must hold its own data (external links are "
                "not followed)")
        if code != h5py.h5l.TYPE_SOFT:
            raise DMFTInputError(f"{path}: {name} is a user-defined link (type {code}); a dmft "
                                 "file holds only hard and soft links")
        _resolve_soft(path, f, raw)


def _resolve_soft(path: str, f: h5py.File, raw_name: bytes) -> None:
    """Follow the soft link ``raw_name`` by hand, one component at a time, without letting HDF5
    follow anything: refuse it when it loops (more than MAX_SOFT_HOPS hops), dangles or reaches
    an external or user-defined link."""
    name = "/" + raw_name.decode(errors="replace")
    parent, _, last = raw_name.rpartition(b"/")
    group = f[parent or b"/"]
    pending = [last]  # path components still to resolve, the next one last
    hops = 0
    while pending:
        comp = pending.pop()
        if comp in (b"", b"."):
            continue
        if not isinstance(group, h5py.Group) or not group.id.links.exists(comp):
            target = _text(f.id.links.get_val(raw_name))
            raise DMFTInputError(f"{path}: the soft link {name} points to {target!r}, which "
                                 "does not exist")
        code = group.id.links.get_info(comp).type
        if code == h5py.h5l.TYPE_HARD:
            group = group[comp]
            continue
        if code != h5py.h5l.TYPE_SOFT:
            raise DMFTInputError(f"{path}: the soft link {name} leads out of the file through "
                                 f"{group.name.rstrip('/')}/{_text(comp)}, an external or "
                                 "user-defined link")
        hops += 1
        if hops > MAX_SOFT_HOPS:
            raise DMFTInputError(f"{path}: the soft link {name} loops (more than "
                                 f"{MAX_SOFT_HOPS} soft links in a row); the file is damaged")
        target = group.id.links.get_val(comp)
        if target.startswith(b"/"):
            group = f["/"]
        pending.extend(reversed(target.split(b"/")))


def _text(raw) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


class Reader:
    """An open file whose objects are read with their kind, dtype and size checked; every
    failure is a DMFTInputError naming the file and the object."""

    def __init__(self, path: str, f: h5py.File):
        self.path = path
        self.file = f
        try:
            size = os.path.getsize(path)
        except OSError:
            size = 0
        self._left = read_limit(size)
        self._limit = read_limit(size)
        self._size = size

    def damaged(self, what: str) -> DMFTInputError:
        return DMFTInputError(f"{self.path} is incomplete or damaged: {what}")

    def has(self, name: str) -> bool:
        return name in self.file

    def group(self, name: str) -> h5py.Group:
        obj = self.file.get(name)
        if obj is None:
            raise self.damaged(f"it has no group /{name.strip('/')}")
        if not isinstance(obj, h5py.Group):
            raise self.damaged(f"/{name.strip('/')} is a {type(obj).__name__}, not a group")
        return obj

    def dataset(self, name: str) -> h5py.Dataset:
        obj = self.file.get(name)
        if obj is None:
            raise self.damaged(f"it has no dataset /{name.strip('/')}")
        if not isinstance(obj, h5py.Dataset):
            raise self.damaged(f"/{name.strip('/')} is a {type(obj).__name__}, not a dataset")
        return obj

    def array(self, name_or_ds, expect: str = "number") -> np.ndarray:
        """The data of a dataset (a path or an h5py.Dataset), after checking that it is stored
        in this file, has the ``expect``-ed dtype and a believable size."""
        ds = self.dataset(name_or_ds) if isinstance(name_or_ds, str) else name_or_ds
        where = ds.name
        if ds.shape is None:
            raise DMFTInputError(f"{self.path}: {where} has no data (an empty dataspace); "
                                 f"expected {_EXPECTED[expect]}")
        self._check_dtype(where, ds.dtype, expect)
        plist = ds.id.get_create_plist()
        if ds.is_virtual or plist.get_external_count() > 0:
            raise DMFTInputError(f"{self.path}: {where} keeps its data outside the file "
                                 "(a virtual dataset or external storage); a dmft file must "
                                 "hold its own data")
        self._take(where, "dataset", ds.shape, ds.dtype)
        try:
            data = ds[()]
        except MemoryError:
            raise DMFTInputError(f"{self.path}: {where} (shape {ds.shape}, "
                                 f"{_nbytes(ds.shape, ds.dtype)} bytes) does not fit in "
                                 "memory") from None
        except (OSError, ValueError, TypeError, RuntimeError) as exc:
            raise DMFTInputError(f"{self.path}: {where} cannot be read "
                                 f"({first_line(exc)}); the file is damaged") from None
        return np.asarray(data)

    def attrs(self, obj=None) -> dict:
        """All attributes of ``obj`` (the root by default), each read after a size check."""
        obj = self.file if obj is None else obj
        out = {}
        where = obj.name.rstrip("/")
        try:
            names = list(obj.attrs)
        except (OSError, RuntimeError, TypeError, ValueError) as exc:
            raise DMFTInputError(f"{self.path}: the attributes of {where or '/'} cannot be "
                                 f"listed ({first_line(exc)})") from None
        for key in names:
            label = f"attribute {where}/{key}" if where else f"attribute {key}"
            try:
                aid = obj.attrs.get_id(key)
                self._take(label, "attribute", aid.shape, aid.dtype)
                out[key] = obj.attrs[key]
            except DMFTInputError:
                raise
            except MemoryError:
                raise DMFTInputError(f"{self.path}: {label} does not fit in memory") from None
            except (OSError, RuntimeError, TypeError, ValueError, KeyError) as exc:
                raise DMFTInputError(f"{self.path}: {label} cannot be read "
                                     f"({first_line(exc)}); the file is damaged") from None
        return out

    def _check_dtype(self, where: str, dtype: np.dtype, expect: str) -> None:
        if expect == "string":
            ok = dtype.kind == "S" or h5py.check_string_dtype(dtype) is not None
        elif expect == "integer":
            ok = dtype.kind in "iu" and dtype.fields is None
        else:
            ok = dtype.kind in _NUMBER_KINDS and dtype.fields is None
        if not ok:
            raise DMFTInputError(f"{self.path}: {where} has dtype {dtype_str(dtype)}; "
                                 f"expected {_EXPECTED[expect]}")

    def _take(self, where: str, what: str, shape, dtype) -> None:
        """Count ``shape x itemsize`` against this file's read limit, or refuse it."""
        nbytes = _nbytes(shape or (), dtype)
        if nbytes > self._left:
            raise DMFTInputError(
                f"{self.path}: {where} declares shape {shape} of {dtype_str(dtype)}, "
                f"{_human(nbytes)}, but the file has {_human(self._size)} on disk and at most "
                f"{_human(self._limit)} may be read from it, all reads together; the {what} "
                "is damaged or forged")
        self._left -= nbytes


def _nbytes(shape, dtype) -> int:
    return math.prod(int(n) for n in shape) * int(np.dtype(dtype).itemsize)


def _human(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def dtype_str(dtype) -> str:
    dtype = np.dtype(dtype)
    if h5py.check_string_dtype(dtype) is not None and dtype.kind == "O":
        return "str (variable-length)"
    return str(dtype.descr) if dtype.fields is not None else str(dtype)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Attributes: strings, integers, JSON, format_version
# --------------------------------------------------------------------------------------------


def str_attr(path, attrs: dict, key: str, default: str | None = None) -> str:
    """A string attribute as ``str``; a DMFTInputError if it is missing (and no ``default``)
    or not one string."""
    if key not in attrs:
        if default is not None:
            return default
        raise DMFTInputError(f"{os.fspath(path)} has no attribute {key}; the file is damaged "
                             "or was not written by dmft")
    value = attrs[key]
    if isinstance(value, np.ndarray) and value.shape == (1,):
        value = value[0]
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            pass
    elif isinstance(value, str):
        return value
    raise DMFTInputError(f"{os.fspath(path)}: attribute {key} is {_show(value)}; expected a "
                         "string")


def int_attr(path, attrs: dict, key: str, default: int) -> int:
    """An integer attribute as ``int`` (``default`` when absent)."""
    if key not in attrs:
        return default
    value = attrs[key]
    arr = np.asarray(value)
    if arr.shape in ((), (1,)) and arr.dtype.kind in "iu":
        return int(arr.reshape(()))
    raise DMFTInputError(f"{os.fspath(path)}: attribute {key} is {_show(value)}; expected an "
                         "integer")


def parse_json(path, text, where: str):
    """``json.loads(text)`` for the JSON held at ``where`` (e.g. "attribute config_json"),
    refusing nesting deeper than MAX_JSON_DEPTH first."""
    if not isinstance(text, str):
        raise DMFTInputError(f"{os.fspath(path)}: {where} is {_show(text)}; expected a JSON "
                             "string")
    depth = json_depth_exceeds(text, MAX_JSON_DEPTH)
    if depth:
        raise DMFTInputError(f"{os.fspath(path)}: {where} nests more than {MAX_JSON_DEPTH} "
                             "levels of JSON arrays/objects; the file is damaged or forged")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DMFTInputError(f"{os.fspath(path)}: {where} is not valid JSON "
                             f"({first_line(exc)})") from None


def json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether the JSON ``text`` nests arrays/objects more than ``limit`` deep (brackets inside
    strings do not count); one pass, no recursion."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def parse_format_version(path, attrs: dict) -> tuple[int, int]:
    """The ``format_version`` root attribute as ``(major, minor)``: exactly two non-negative
    integers (int64[2] as written); anything else is refused naming the value."""
    if "format_version" not in attrs:
        raise DMFTInputError(f"{os.fspath(path)} has no attribute format_version; the file is "
                             "damaged or was not written by dmft")
    value = attrs["format_version"]
    arr = np.asarray(value) if isinstance(value, (np.ndarray, np.generic)) else None
    if (arr is not None and arr.dtype.kind in "iu" and arr.shape == (2,)
            and int(arr.min()) >= 0):
        return int(arr[0]), int(arr[1])
    raise DMFTInputError(f"{os.fspath(path)}: attribute format_version is {_show(value)}; "
                         "expected two integers [major, minor], e.g. [1, 2] for 1.2")


def _show(value) -> str:
    """A short description of an attribute value for a message: its repr and its type."""
    if isinstance(value, np.ndarray):
        text = np.array2string(value, threshold=6, max_line_width=60)
        kind = f"an array of dtype {dtype_str(value.dtype)}, shape {value.shape}"
    else:
        text = repr(value.item() if isinstance(value, np.generic) else value)
        kind = f"a {type(value).__name__}"
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({kind})"
