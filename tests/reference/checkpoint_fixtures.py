#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Checkpoint files for the checkpoint reader's tests, written by torch.save itself.

Writes, into --out:
  *.pth           checkpoints in every combination the reader must accept: {zip, legacy} x
                  {OrderedDict state dict with _metadata, plain dict, training checkpoint with
                  "model"}, all dtypes, shared storages and strided views; a small torchvision
                  model (FPN + RPN head), also with old key names; the first (tar) format; and
                  hostile files.
  expected/*.bin  the tensors each accepted file must give, contiguous, little-endian.
  manifest.json   {"sets": {SET: [{name, dtype, shape, offset, nbytes}]},
                   "fixtures": [{file, set, module_versions} | {file, error: [substrings]}]}

Usage:
  checkpoint_fixtures.py --out DIR --stamp FILE
  checkpoint_fixtures.py --corpus DIR          seed corpus for the fuzzer (small files)
  checkpoint_fixtures.py --verify FILE --against REF [--model tv]
      torch.load(FILE, weights_only=True) must give an OrderedDict equal to REF's state dict
      (and, with --model tv, load into the torchvision modules REF came from).
"""

import argparse
import collections
import io
import json
import os
import pickle
import struct
import sys
import tarfile
import zipfile

import torch
import torchvision  # noqa: F401  (the reference: its modules define the real state dicts)
from torch import nn
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import FeaturePyramidNetwork

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float64: "float64",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
}


def tensor_bytes(t):
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


# --- state dicts -------------------------------------------------------------------------------

def mixed_state_dict():
    """Every dtype, a 0-d and an empty tensor, two views of one storage, strided views."""
    g = torch.Generator().manual_seed(0)
    sd = collections.OrderedDict()
    sd["conv.weight"] = torch.randn(4, 3, 3, 3, generator=g)
    sd["conv.bias"] = torch.randn(4, generator=g)
    sd["half"] = torch.randn(5, generator=g).half()
    sd["bf16"] = torch.randn(2, 3, generator=g).bfloat16()
    sd["double"] = torch.randn(3, generator=g).double()
    sd["long"] = torch.tensor([1, -2, 2**40], dtype=torch.int64)
    sd["int"] = torch.tensor([[1, -5], [7, 2**31 - 1]], dtype=torch.int32)
    sd["short"] = torch.tensor([-300, 300], dtype=torch.int16)
    sd["char"] = torch.tensor([-128, 5, 127], dtype=torch.int8)
    sd["byte"] = torch.tensor([0, 200, 255], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["bn.num_batches_tracked"] = torch.tensor(7)
    sd["empty"] = torch.zeros(0, 3)
    shared = torch.arange(20, dtype=torch.float32)
    sd["shared.a"] = shared[2:8].view(2, 3)
    sd["shared.b"] = shared[10:14]
    sd["transposed"] = torch.randn(3, 5, generator=g).t()
    sd["strided"] = torch.randn(4, 6, generator=g)[::2, 1::2]
    sd._metadata = collections.OrderedDict(
        [("", {"version": 1}), ("conv", {"version": 1}), ("bn", {"version": 2}), ("other", {})])
    return sd


class TinyDetectorParts(nn.Module):
    """The torchvision modules whose state dict keys changed between versions."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.fpn = FeaturePyramidNetwork([8, 16], 8)
        self.rpn = nn.Module()
        self.rpn.head = RPNHead(8, 3)


def torchvision_state_dict():
    torch.manual_seed(1)
    return TinyDetectorParts().state_dict()


def old_key_state_dict(sd):
    """As written by torchvision < 0.13 (FPN) / < 0.14 (RPN head): old key names and no
    version for those modules, so that load_state_dict renames them."""
    old = collections.OrderedDict()
    for key, value in sd.items():
        key = key.replace("fpn.inner_blocks.0.0.", "fpn.inner_blocks.0.")
        key = key.replace("fpn.inner_blocks.1.0.", "fpn.inner_blocks.1.")
        key = key.replace("fpn.layer_blocks.0.0.", "fpn.layer_blocks.0.")
        key = key.replace("fpn.layer_blocks.1.0.", "fpn.layer_blocks.1.")
        key = key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
        old[key] = value
    old._metadata = collections.OrderedDict()
    for prefix, info in sd._metadata.items():
        info = dict(info)
        if prefix in ("backbone.fpn", "rpn.head"):
            info.pop("version", None)
        old._metadata[prefix] = info
    return old


def versions_of(sd):
    meta = getattr(sd, "_metadata", None) or {}
    return {k: v["version"] for k, v in meta.items() if "version" in v}


def training_checkpoint(sd):
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[8, 11], gamma=0.1)
    args = argparse.Namespace(lr=0.02, epochs=26, data_path="/data/coco", aspect_ratio_group_factor=3)
    return {"model": sd, "optimizer": opt.state_dict(), "lr_scheduler": sched.state_dict(),
            "args": args, "epoch": 3}


# --- hand-made pickles, for the hostile files --------------------------------------------------

class Storage:
    """Pickled as a persistent id, as torch.save writes a storage."""

    def __init__(self, storage_type, key, numel, legacy=False, view=None):
        self.storage_type, self.key, self.numel, self.legacy, self.view = storage_type, key, numel, legacy, view

    def pid(self):
        pid = ("storage", self.storage_type, self.key, "cpu", self.numel)
        return pid + (self.view,) if self.legacy else pid


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class Call:
    """Pickles as a call of `func` with `args`: what a hostile file does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


class CraftPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid() if isinstance(obj, Storage) else None


def dumps(obj, protocol=2):
    buf = io.BytesIO()
    CraftPickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def write_zip(path, records, compress=False):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in records.items():
            z.writestr("archive/" + name, data)


def write_legacy(path, main_pickle, storages, little_endian=True):
    """storages: [(key, numel, raw bytes)] in file order."""
    with open(path, "wb") as f:
        f.write(pickle.dumps(MAGIC_NUMBER, protocol=2))
        f.write(pickle.dumps(PROTOCOL_VERSION, protocol=2))
        f.write(pickle.dumps({"protocol_version": PROTOCOL_VERSION, "little_endian": little_endian,
                              "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2))
        f.write(main_pickle)
        f.write(pickle.dumps([key for key, _, _ in storages], protocol=2))
        for _, numel, data in storages:
            f.write(struct.pack("<q", numel))
            f.write(data)


TAR_TENSOR_TYPES = {torch.float32: torch.FloatTensor, torch.float64: torch.DoubleTensor,
                    torch.float16: torch.HalfTensor, torch.int64: torch.LongTensor,
                    torch.int32: torch.IntTensor, torch.int16: torch.ShortTensor,
                    torch.int8: torch.CharTensor, torch.uint8: torch.ByteTensor}
TAR_STORAGE_TYPES = {torch.float32: torch.FloatStorage, torch.float64: torch.DoubleStorage,
                     torch.float16: torch.HalfStorage, torch.int64: torch.LongStorage,
                     torch.int32: torch.IntStorage, torch.int16: torch.ShortStorage,
                     torch.int8: torch.CharStorage, torch.uint8: torch.ByteStorage}


class TarRef:
    def __init__(self, key):
        self.key = key


def write_tar(path, sd, main_pickle=None):
    """torch.save's first format (a tar of 'sys_info', 'pickle', 'tensors', 'storages'), as the
    first PyTorch releases wrote it; today's torch.load still reads it. Tensors viewing one
    storage share it, with their offsets and strides."""
    tensors, storages = [], collections.OrderedDict()
    obj = collections.OrderedDict()
    for name, t in sd.items():
        base = t.storage().data_ptr()
        if base not in storages:
            storages[base] = (len(storages) + 100, t)
        tensors.append((len(tensors) + 1, storages[base][0], t))
        obj[name] = TarRef(len(tensors))

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            return str(o.key) if isinstance(o, TarRef) else None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    tensor_list = io.BytesIO()
    pickle.dump(len(tensors), tensor_list, protocol=2)
    for key, storage_key, t in tensors:
        pickle.dump((key, storage_key, TAR_TENSOR_TYPES[t.dtype]), tensor_list, protocol=2)
        tensor_list.write(struct.pack("<i", t.dim()) + b"\0\0\0\0")
        tensor_list.write(struct.pack(f"<{t.dim()}q", *t.shape))
        tensor_list.write(struct.pack(f"<{t.dim()}q", *t.stride()))
        tensor_list.write(struct.pack("<q", t.storage_offset()))
    storage_list = io.BytesIO()
    pickle.dump(len(storages), storage_list, protocol=2)
    for storage_key, t in storages.values():
        pickle.dump((storage_key, "cpu", TAR_STORAGE_TYPES[t.dtype]), storage_list, protocol=2)
        whole = torch.tensor([], dtype=t.dtype).set_(t.storage())
        storage_list.write(struct.pack("<q", whole.numel()))
        storage_list.write(tensor_bytes(whole))
    pickle.dump([], storage_list, protocol=2)
    sys_info = pickle.dumps({"protocol_version": PROTOCOL_VERSION, "little_endian": True}, protocol=2)
    with tarfile.open(path, "w:", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("sys_info", sys_info), ("pickle", main_pickle or buf.getvalue()),
                           ("tensors", tensor_list.getvalue()), ("storages", storage_list.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# --- fixture set -------------------------------------------------------------------------------

class Fixtures:
    def __init__(self, out):
        self.out = out
        self.sets = {}
        self.fixtures = []
        os.makedirs(os.path.join(out, "expected"), exist_ok=True)

    def path(self, name):
        return os.path.join(self.out, name)

    def expected_set(self, name, sd):
        entries, blob = [], bytearray()
        for key, t in sd.items():
            data = tensor_bytes(t)
            entries.append({"name": key, "dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                            "offset": len(blob), "nbytes": len(data)})
            blob += data
        with open(os.path.join(self.out, "expected", name + ".bin"), "wb") as f:
            f.write(blob)
        self.sets[name] = entries

    def ok(self, file, set_name, versions):
        self.fixtures.append({"file": file, "set": set_name, "module_versions": versions})

    def error(self, file, *substrings):
        self.fixtures.append({"file": file, "error": list(substrings)})

    def save(self, file, obj, legacy=False):
        torch.save(obj, self.path(file), _use_new_zipfile_serialization=not legacy)

    def finish(self):
        with open(self.path("manifest.json"), "w") as f:
            json.dump({"sets": self.sets, "fixtures": self.fixtures}, f, indent=1)


def accepted_files(fx):
    mixed = mixed_state_dict()
    tv = torchvision_state_dict()
    old = old_key_state_dict(tv)
    fx.expected_set("mixed", mixed)
    fx.expected_set("tv", tv)
    fx.expected_set("tv_old", old)

    for fmt, legacy in (("zip", False), ("legacy", True)):
        fx.save(f"mixed_ordered_{fmt}.pth", mixed, legacy)
        fx.ok(f"mixed_ordered_{fmt}.pth", "mixed", versions_of(mixed))
        fx.save(f"mixed_plain_{fmt}.pth", dict(mixed), legacy)
        fx.ok(f"mixed_plain_{fmt}.pth", "mixed", {})
        fx.save(f"mixed_training_{fmt}.pth", training_checkpoint(mixed), legacy)
        fx.ok(f"mixed_training_{fmt}.pth", "mixed", versions_of(mixed))
        fx.save(f"tv_{fmt}.pth", tv, legacy)
        fx.ok(f"tv_{fmt}.pth", "tv", versions_of(tv))
        fx.save(f"tv_old_keys_{fmt}.pth", old, legacy)
        fx.ok(f"tv_old_keys_{fmt}.pth", "tv_old", versions_of(old))
        fx.save(f"tv_training_{fmt}.pth", training_checkpoint(tv), legacy)
        fx.ok(f"tv_training_{fmt}.pth", "tv", versions_of(tv))
        fx.save(f"state_dict_key_{fmt}.pth", {"state_dict": tv, "epoch": 1}, legacy)
        fx.ok(f"state_dict_key_{fmt}.pth", "tv", versions_of(tv))

    # The tar format knows neither bfloat16 nor bool, nor _metadata.
    tar_sd = collections.OrderedDict((k, v) for k, v in mixed.items() if v.dtype in TAR_TENSOR_TYPES)
    write_tar(fx.path("mixed_tar.pth"), tar_sd)
    fx.expected_set("tar", tar_sd)
    fx.ok("mixed_tar.pth", "tar", {})

    # Parameters (not just tensors), as torch.save(dict(model.named_parameters())) writes them.
    params = collections.OrderedDict((k, nn.Parameter(v.clone())) for k, v in tv.items()
                                     if v.is_floating_point())
    fx.save("parameters_zip.pth", params)
    fx.expected_set("params", params)
    fx.ok("parameters_zip.pth", "params", {})

    # A file written on a big-endian machine: records byte-swapped, byteorder "big".
    values = collections.OrderedDict(
        [("w", torch.tensor([1.5, -2.25, 3e8], dtype=torch.float32)),
         ("n", torch.tensor([1, -1, 2**33], dtype=torch.int64)),
         ("h", torch.tensor([0.5, -1.0], dtype=torch.float16))])
    storages = collections.OrderedDict()
    for i, (key, t) in enumerate(values.items()):
        storages[key] = Storage(t.dtype and {torch.float32: torch.FloatStorage,
                                             torch.int64: torch.LongStorage,
                                             torch.float16: torch.HalfStorage}[t.dtype], str(i), t.numel())
    obj = collections.OrderedDict((k, Tensor(storages[k], 0, t.shape, t.stride())) for k, t in values.items())
    records = {"data.pkl": dumps(obj), "byteorder": b"big", "version": b"3\n"}
    for i, (key, t) in enumerate(values.items()):
        records[f"data/{i}"] = t.numpy().byteswap().tobytes()
    write_zip(fx.path("big_endian_zip.pth"), records)
    fx.expected_set("big_endian", values)
    fx.ok("big_endian_zip.pth", "big_endian", {})

    # The same tensors written by Python's zipfile rather than torch (no alignment padding).
    records = {"data.pkl": dumps(obj), "version": b"3\n"}
    for i, (key, t) in enumerate(values.items()):
        records[f"data/{i}"] = t.numpy().tobytes()
    write_zip(fx.path("python_zipfile_zip.pth"), records)
    fx.ok("python_zipfile_zip.pth", "big_endian", {})

    # A legacy storage view (torch < 0.4): a tensor on a slice of another storage.
    root = Storage(torch.FloatStorage, "root", 10, legacy=True)
    view = Storage(torch.FloatStorage, "root", 10, legacy=True, view=("view", 4, 3))
    data = torch.arange(10, dtype=torch.float32)
    obj = collections.OrderedDict([("all", Tensor(root, 0, (10,), (1,))),
                                   ("view", Tensor(view, 1, (2,), (1,)))])
    write_legacy(fx.path("legacy_view.pth"), dumps(obj), [("root", 10, tensor_bytes(data))])
    fx.expected_set("legacy_view", collections.OrderedDict([("all", data), ("view", data[5:7])]))
    fx.ok("legacy_view.pth", "legacy_view", {})


def hostile_files(fx):
    ordered = collections.OrderedDict
    small = ordered([("w", torch.arange(4, dtype=torch.float32))])

    def zip_pickle(name, pkl, records=None):
        records = dict(records or {"data/0": tensor_bytes(small["w"])})
        records["data.pkl"] = pkl
        write_zip(fx.path(name), records)

    f32 = torch.FloatStorage
    # Code execution, in the ways a pickle can ask for it.
    # What `pickle` writes for os.system on Linux is posix.system; hand-written files say os.
    os_system = b"\x80\x02cos\nsystem\nX\x0a\x00\x00\x00echo owned\x85R."
    zip_pickle("os_system_zip.pth", os_system)
    fx.error("os_system_zip.pth", "'os.system'", "refusing")
    write_legacy(fx.path("os_system_legacy.pth"), os_system, [])
    fx.error("os_system_legacy.pth", "'os.system'", "refusing")
    zip_pickle("posix_system_zip.pth", dumps(ordered([("w", Call(os.system, "echo owned"))])))
    fx.error("posix_system_zip.pth", "'posix.system'", "refusing")
    zip_pickle("builtins_eval_zip.pth", dumps({"w": Call(eval, "1+1")}, protocol=4))
    fx.error("builtins_eval_zip.pth", "'builtins.eval'")
    zip_pickle("load_from_bytes_zip.pth", dumps({"w": Call(torch.storage._load_from_bytes, b"x")}))
    fx.error("load_from_bytes_zip.pth", "'torch.storage._load_from_bytes'")
    fx.save("whole_module_zip.pth", nn.Linear(2, 2))
    fx.error("whole_module_zip.pth", "'torch.nn.modules.linear.Linear'")
    fx.save("model_is_module_zip.pth", {"model": nn.Linear(2, 2), "epoch": 1})
    fx.error("model_is_module_zip.pth", "'torch.nn.modules.linear.Linear'")
    # REDUCE on something that is not a known global: a string, and a storage type.
    zip_pickle("reduce_string_zip.pth", b"\x80\x02X\x02\x00\x00\x00osX\x01\x00\x00\x00a\x85R.")
    fx.error("reduce_string_zip.pth", "REDUCE calls a string")
    zip_pickle("reduce_storage_zip.pth", b"\x80\x02ctorch\nFloatStorage\n)R.")
    fx.error("reduce_storage_zip.pth", "torch.FloatStorage")
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), fx.path("torchscript.pth"))
    fx.error("torchscript.pth", "TorchScript")

    # Sizes that would need huge allocations.
    big = Storage(f32, "0", 2**40)
    zip_pickle("huge_storage_zip.pth", dumps(ordered([("w", Tensor(big, 0, (2**40,), (1,)))])))
    fx.error("huge_storage_zip.pth", "claims 1099511627776 elements")
    big = Storage(f32, "0", 2**40, legacy=True)
    write_legacy(fx.path("huge_storage_legacy.pth"), dumps(ordered([("w", Tensor(big, 0, (4,), (1,)))])),
                 [("0", 4, tensor_bytes(small["w"]))])
    fx.error("huge_storage_legacy.pth", "claims 1099511627776 elements")
    st = Storage(f32, "0", 4)
    zip_pickle("view_out_of_bounds_zip.pth", dumps(ordered([("w", Tensor(st, 2, (2, 2), (2, 1)))])))
    fx.error("view_out_of_bounds_zip.pth", "reaches element 5", "holds only 4")
    zip_pickle("broadcast_bomb_zip.pth", dumps(ordered([("w", Tensor(st, 0, (2**20, 2**20), (0, 0)))])))
    fx.error("broadcast_bomb_zip.pth", "refusing to expand")
    zip_pickle("size_overflow_zip.pth", dumps(ordered([("w", Tensor(st, 0, (2**62, 2**62), (0, 0)))])))
    fx.error("size_overflow_zip.pth", "overflow")
    repeat = ordered((f"w{i}", Tensor(st, 0, (2**23,), (0,))) for i in range(3))
    zip_pickle("repeated_views_zip.pth", dumps(repeat))
    fx.error("repeated_views_zip.pth", "over four times the file's size")
    # OrderedDict(d) for one 5000-entry dict d, 1000 times over: a few KB asking for 5M copies.
    pkl = b"\x80\x02ccollections\nOrderedDict\nq\x00}q\x01("
    pkl += b"".join(b"M" + struct.pack("<H", k) + b"N" for k in range(5000)) + b"u"
    pkl += b"h\x00h\x01\x85R0" * 1000 + b"}."
    zip_pickle("copy_amplification_zip.pth", pkl)
    fx.error("copy_amplification_zip.pth", "copies more than")
    zip_pickle("deep_nesting_zip.pth", b"\x80\x02" + b"(]" * 100000 + b".")
    fx.error("deep_nesting_zip.pth", "nests deeper than")
    zip_pickle("deep_lists_zip.pth", b"\x80\x02" + b"]" * 100000 + b"a" * 99999 + b".")
    fx.error("deep_lists_zip.pth", "holds a list, not a state dict")
    zip_pickle("huge_string_zip.pth", b"\x80\x02X\xff\xff\xff\x7f" + b"a" * 16)
    fx.error("huge_string_zip.pth", "claims 2147483647 bytes")
    zip_pickle("memo_unset_zip.pth", b"\x80\x02h\x05.")
    fx.error("memo_unset_zip.pth", "memo entry 5")
    zip_pickle("self_containing_zip.pth", b"\x80\x02]q\x00h\x00a.")
    fx.error("self_containing_zip.pth", "not a state dict")
    zip_pickle("missing_record_zip.pth", dumps(ordered([("w", Tensor(Storage(f32, "7", 4), 0, (4,), (1,)))])))
    fx.error("missing_record_zip.pth", "no record 'archive/data/7'")
    zip_pickle("not_a_tensor_zip.pth", dumps(ordered([("w", 3.5)])))
    fx.error("not_a_tensor_zip.pth", "'w' is a float, not a tensor")
    zip_pickle("unknown_opcode_zip.pth", b"\x80\x02N\x00.")
    fx.error("unknown_opcode_zip.pth", "opcode 0x0")

    # Damaged containers.
    fx.save("crc_zip.pth", small)
    with open(fx.path("crc_zip.pth"), "r+b") as f:
        data = f.read()
        pos = data.index(tensor_bytes(small["w"]))
        f.seek(pos + 5)
        f.write(bytes([data[pos + 5] ^ 0x40]))
    fx.error("crc_zip.pth", "CRC-32")
    write_zip(fx.path("compressed_zip.pth"), {"data.pkl": dumps(small), "data/0": b"\0" * 64}, compress=True)
    fx.error("compressed_zip.pth", "compressed")
    with open(fx.path("text.pth"), "w") as f:
        f.write("<html>404 Not Found</html>\n")
    fx.error("text.pth", "not a PyTorch checkpoint")
    with open(fx.path("not_magic.pth"), "wb") as f:
        f.write(pickle.dumps({"a": 1}, protocol=2))
    fx.error("not_magic.pth", "magic number")
    fx.save("truncated_zip.pth", small)
    with open(fx.path("truncated_zip.pth"), "r+b") as f:
        f.truncate(os.path.getsize(fx.path("truncated_zip.pth")) - 30)
    fx.error("truncated_zip.pth", "end-of-central-directory")
    fx.save("truncated_legacy.pth", small, legacy=True)
    with open(fx.path("truncated_legacy.pth"), "r+b") as f:
        f.truncate(os.path.getsize(fx.path("truncated_legacy.pth")) - 3)
    fx.error("truncated_legacy.pth", "truncated")

    write_tar(fx.path("os_system_tar.pth"), small, main_pickle=os_system)
    fx.error("os_system_tar.pth", "'os.system'", "refusing")

    # Small valid files the test truncates at every offset and damages at random.
    fx.save("small_zip.pth", small)
    fx.save("small_legacy.pth", small, legacy=True)
    fx.expected_set("small", small)
    fx.ok("small_zip.pth", "small", {})
    fx.ok("small_legacy.pth", "small", {})
    write_tar(fx.path("small_tar.pth"), small)
    fx.ok("small_tar.pth", "small", {})


def write_corpus(out):
    """Small seeds for the fuzzer: valid files of each form and a few hostile ones."""
    os.makedirs(out, exist_ok=True)
    fx = Fixtures(os.path.join(out, ".work"))
    small = collections.OrderedDict([("a.weight", torch.arange(6, dtype=torch.float32).view(2, 3)),
                                     ("a.bias", torch.tensor([1, 2], dtype=torch.int64))])
    small["a.t"] = small["a.weight"].t()
    small._metadata = collections.OrderedDict([("", {"version": 1}), ("a", {"version": 2})])
    seeds = {
        "ordered_zip": (small, False), "ordered_legacy": (small, True),
        "plain_zip": (dict(small), False), "plain_legacy": (dict(small), True),
        "training_zip": ({"model": small, "epoch": 3, "optimizer": {"state": {}, "param_groups": [
            {"lr": 0.1, "params": [0, 1], "nesterov": False}]}}, False),
        "half_legacy": (collections.OrderedDict([("h", torch.ones(3).half()), ("b", torch.ones(2).bfloat16()),
                                                 ("z", torch.ones(2, dtype=torch.bool))]), True),
    }
    for name, (obj, legacy) in seeds.items():
        torch.save(obj, os.path.join(out, name + ".pth"), _use_new_zipfile_serialization=not legacy)
    hostile_files(fx)
    write_tar(os.path.join(out, "plain_tar.pth"), collections.OrderedDict(
        [("w", small["a.weight"]), ("t", small["a.t"]), ("b", small["a.bias"])]))
    for name in ("os_system_zip.pth", "builtins_eval_zip.pth", "big_endian_zip.pth", "memo_unset_zip.pth",
                 "view_out_of_bounds_zip.pth", "huge_storage_legacy.pth"):
        src = os.path.join(fx.out, name)
        if os.path.exists(src):
            with open(src, "rb") as f, open(os.path.join(out, name), "wb") as g:
                g.write(f.read())
    accepted = Fixtures(os.path.join(out, ".work2"))
    accepted_files(accepted)
    for name in ("big_endian_zip.pth", "legacy_view.pth"):
        with open(os.path.join(accepted.out, name), "rb") as f, open(os.path.join(out, name), "wb") as g:
            g.write(f.read())
    # Copies whose central directory CRCs are 0, which the reader takes as "not computed": the
    # fuzzer's changes to the records inside are then read instead of failing the CRC check.
    for name in ("ordered_zip", "training_zip"):
        with open(os.path.join(out, name + ".pth"), "rb") as f:
            data = bytearray(f.read())
        pos = data.find(b"PK\x01\x02")
        while pos >= 0:
            data[pos + 16:pos + 20] = b"\0\0\0\0"
            pos = data.find(b"PK\x01\x02", pos + 4)
        with open(os.path.join(out, name + "_nocrc.pth"), "wb") as f:
            f.write(data)
    import shutil
    shutil.rmtree(fx.out)
    shutil.rmtree(accepted.out)


def verify(path, against, model):
    """Checks a checkpoint written by the C++ writer the way a Python user would load it."""
    loaded = torch.load(path, weights_only=True)
    reference = torch.load(against)
    if isinstance(reference, dict) and "model" in reference:
        reference = reference["model"]
    problems = []
    if type(loaded) is not collections.OrderedDict:
        problems.append(f"loaded a {type(loaded).__name__}, not an OrderedDict")
    if list(loaded.keys()) != list(reference.keys()):
        problems.append(f"keys differ: {list(loaded.keys())} vs {list(reference.keys())}")
    for key, ref in reference.items():
        got = loaded.get(key)
        if got is None:
            continue
        if got.dtype != ref.dtype or got.shape != ref.shape or not torch.equal(got, ref):
            problems.append(f"{key}: got {got.dtype} {tuple(got.shape)}, expected {ref.dtype} {tuple(ref.shape)}"
                            f" (equal values: {got.shape == ref.shape and torch.equal(got.to(ref.dtype), ref)})")
    if model == "tv":
        want = versions_of(reference)
        have = versions_of(loaded)
        if have != want:
            problems.append(f"_metadata versions {have}, expected {want}")
        parts = TinyDetectorParts()
        result = parts.load_state_dict(loaded, strict=True)
        if result.missing_keys or result.unexpected_keys:
            problems.append(f"load_state_dict: {result}")
        for key, value in parts.state_dict().items():
            if not torch.equal(value, reference[key]):
                problems.append(f"{key} differs after load_state_dict")
    for p in problems:
        print("MISMATCH", p)
    print(f"checked {len(reference)} tensors: {'ok' if not problems else 'FAILED'}")
    return 0 if not problems else 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    parser.add_argument("--stamp")
    parser.add_argument("--corpus")
    parser.add_argument("--verify")
    parser.add_argument("--against")
    parser.add_argument("--model", default="")
    args = parser.parse_args()
    if args.verify:
        sys.exit(verify(args.verify, args.against, args.model))
    if args.corpus:
        write_corpus(args.corpus)
        return
    fx = Fixtures(args.out)
    accepted_files(fx)
    hostile_files(fx)
    fx.finish()
    if args.stamp:
        with open(args.stamp, "w") as f:
            f.write("ok\n")


if __name__ == "__main__":
    main()
