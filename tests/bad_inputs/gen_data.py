#!/usr/bin/env python3
"""Write the hostile inputs of the bad-inputs catalogue into data/ (standard
library only). The files are committed; run this only to regenerate them:
python3 tests/bad_inputs/gen_data.py"""
import json, os, struct, zlib

D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
os.makedirs(D, exist_ok=True)


def put(name, data):
    with open(os.path.join(D, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- YAML pipelines ----
put("syntax.yaml", "version: 1\nmodel: {plugin: resnet18\nseed: 3\n")
put("tab_indent.yaml", "version: 1\nmodel:\n\tplugin: resnet18\n")
put("wrong_type.yaml", "version: one\n")
put("unknown_key.yaml", "version: 1\nmodle: {plugin: resnet18}\n")
put("huge_number.yaml", "version: 1\nseed: 123456789012345678901234567890\n")
put("deep_nesting.yaml", "version: 1\nx: " + "[" * 500 + "]" * 500 + "\n")
put("recursive_alias.yaml", "version: 1\na: &a [x, *a]\n")
laughs = "version: 1\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
for i in range(1, 10):
    laughs += "l%d: &l%d [%s]\n" % (i, i, ", ".join(["*l%d" % (i - 1)] * 9))
put("billion_laughs.yaml", laughs)
put("duplicate_key.yaml", "version: 1\nseed: 1\nseed: 2\n")
put("python_tag.yaml", "version: 1\nseed: !!python/object:os.system [\"true\"]\n")
put("not_a_map.yaml", "- version\n- 1\n")
put("bad_utf8.yaml", b"version: 1\nname: \xff\xfe\xc3\n")
put("nul_byte.yaml", b"version: 1\nna\x00me: x\n")
put("future_version.yaml", "version: 99\n")

# ---- safetensors weights ----
def st(header, blob=b"", hlen=None, pad=True):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + blob


f32 = lambda *v: struct.pack("<%df" % len(v), *v)
good = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
put("empty.safetensors", b"")
put("truncated.safetensors", st(good, f32(1, 2))[:30])
put("header_len_lies.safetensors", st(good, f32(1, 2), hlen=(1 << 63) + 5))
put("header_over_limit.safetensors", st(good, f32(1, 2), hlen=200 * 1000 * 1000))
put("header_not_json.safetensors", st(b"{not json at all}", f32(1, 2)))
put("offsets_overlap.safetensors", st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                       "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, f32(1, 2, 3)))
put("offsets_past_end.safetensors", st({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, f32(1, 2)))
put("dtype_unknown.safetensors", st({"w": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}}, f32(1, 2)))
put("shape_mismatch.safetensors", st({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, f32(1, 2)))
put("negative_dim.safetensors", st({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, f32(1, 2)))
put("huge_tensor.safetensors", st({"w": {"dtype": "F32", "shape": [1 << 40, 1 << 40], "data_offsets": [0, 8]}}, f32(1, 2)))
put("duplicate_name.safetensors", st(b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                                     b'"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32(1, 2)))
put("trailing_bytes.safetensors", st(good, f32(1, 2, 3)))
put("meta_not_string.safetensors", st({"__metadata__": {"k": 5}, **good}, f32(1, 2)))
put("nan_weights.safetensors", st(good, f32(float("nan"), 1)))

# ---- images ----
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))


def png(w, h, depth, ctype, rows, extra=b"", ihdr=None):
    raw = b"".join(b"\x00" + r for r in rows)
    hd = ihdr if ihdr is not None else chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + hd + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


put("zero_size.png", b"")
gray = png(4, 4, 8, 0, [bytes([16 * i + j for j in range(4)]) for i in range(4)])
put("truncated.png", gray[:60])
put("wrong_magic.png", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")
bad_crc = bytearray(gray)
bad_crc[29] ^= 0xff      # last byte of IHDR's CRC
put("bad_crc.png", bytes(bad_crc))
put("zero_width.png", png(0, 4, 8, 0, [], ihdr=chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 4, 8, 0, 0, 0, 0))))
put("huge_dims.png", png(30000, 30000, 8, 0, [b"\x00"]))
put("bad_zlib.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0))
    + chunk(b"IDAT", b"\x78\x9c\xff\xff\xff\xff") + chunk(b"IEND", b""))
put("one_by_one.png", png(1, 1, 8, 0, [b"\x80"]))
put("gray16.png", png(2, 1, 16, 0, [b"\x00\x00\xff\xff"]))
put("palette.png", png(2, 1, 8, 3, [b"\x00\x01"], chunk(b"PLTE", b"\xff\x00\x00\x00\x00\xff")))
put("jpeg_soi_only.jpg", b"\xff\xd8\xff")

# ---- datasets: npz archives and CSV label files ----
def npy(descr, shape, raw, fortran=False):
    d = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, "True" if fortran else "False", "(%d,)" % shape[0] if len(shape) == 1 else str(tuple(shape)))
    h = d.encode() + b" " * (-(10 + len(d) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + raw


def npz(members, crc_fix=None):
    out, cd = b"", b""
    for name, data in members:
        crc = zlib.crc32(data) if crc_fix is None else crc_fix
        nb = name.encode()
        out_off = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034b50, 20, 0, 0, 0, 0, crc, len(data), len(data), len(nb), 0) + nb + data
        cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 20, 20, 0, 0, 0, 0, crc, len(data), len(data),
                          len(nb), 0, 0, 0, 0, 0, out_off) + nb
    return out + cd + struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, len(members), len(members), len(cd), len(out), 0)


labels = npy("<i8", [2], struct.pack("<2q", 0, 1))
put("not_zip.npz", b"this is not a zip archive, just some text\n")
put("labels.npz", npz([("train_labels.npy", labels)]))
put("crc_mismatch.npz", npz([("train_labels.npy", labels)], crc_fix=0x12345678))
put("truncated.npz", npz([("train_labels.npy", labels)])[:-30])
put("fortran.npz", npz([("x.npy", npy("<f4", [2, 2], f32(1, 2, 3, 4), fortran=True))]))
put("float_labels.npz", npz([("y.npy", npy("<f8", [2], struct.pack("<2d", 1.0, 2.5)))]))
put("u8_overflow.npz", npz([("y.npy", npy("<i4", [2], struct.pack("<2i", 3, 300)))]))
put("bad_descr.npz", npz([("y.npy", npy("<c16", [1], b"\x00" * 16))]))

put("unterminated.csv", 'path,label\n"a.png,0\nb.png,1\n')
put("ragged.csv", "path,label\na.png,0\nb.png\n")
put("label_not_int.csv", "path,label\na.png,zero\n")
put("no_such_column.csv", "path,label\na.png,0\n")
put("empty.csv", "")
put("nul.csv", b"path,label\na\x00.png,0\n")
# Regression from fuzzing: metadata-only header.
put("no_tensors.safetensors", struct.pack("<Q", 8) + b"{}      ")

# ---- issue #20: sizes checked before allocating, names from files escaped ----
def medmnist(label_values, side=(28, 28)):
    """A MedMNIST-layout archive: 2 images per split (uint8), the train labels given."""
    h, w = side
    members = []
    for s in ("train", "val", "test"):
        labs = label_values if s == "train" else [0, 1]
        members.append((s + "_images.npy", npy("|u1", [len(labs), h, w], b"\x00" * (len(labs) * h * w))))
        members.append((s + "_labels.npy", npy("<i4", [len(labs), 1], struct.pack("<%di" % len(labs), *labs))))
    return npz(members)


put("small.npz", medmnist([0, 1]))
put("huge_label.npz", medmnist([0, 100000000]))
put("wide_images.npz", medmnist([0, 1], side=(1, 40000)))
ds = "dataset:\n  plugin: medmnist\n  options: { path: %s, image_size: %d }\n"
model = "model:\n  plugin: vgg\n  options: { depth: 11, width: 0.0625%s }\nattribution: [{ plugin: magnitude }]\n"
put("huge_label.yaml", "version: 1\n" + ds % ("huge_label.npz", 32) + model % "")
put("wide_images.yaml", "version: 1\n" + ds % ("wide_images.npz", 32) + model % "")
put("memory_bomb.yaml", "version: 1\n" + ds % ("small.npz", 4096) + model % "")
put("num_classes.yaml", "version: 1\n" + ds % ("small.npz", 32) + model % ", num_classes: 99999999999")
put("escape_key.yaml", 'version: 1\n"se\\e[2Jed\\nx": 1\n')


def model_meta(classes, options="depth=11\nwidth=1\n", inp="3x32x32"):
    return {"iaprune.model": "vgg", "iaprune.model_options": options, "iaprune.input": inp,
            "iaprune.num_classes": classes}


put("classes_overflow.safetensors", st({"__metadata__": model_meta("99999999999")}))
put("huge_input.safetensors", st({"__metadata__": model_meta("2", inp="3x4000000000x4000000000")}))
put("huge_classifier.safetensors", st({"__metadata__": model_meta("1000000")}))
put("escape_name.safetensors", st({"x\x1b[2J\ny": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                   "__metadata__": {"note\x1b]0;pwned\x07": "a\nb"}}, f32(1)))
put("escape_dup.safetensors", st(b'{"a\\u001b[31m":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                                 b'"a\\u001b[31m":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32(1, 2)))
