#!/usr/bin/env python3
"""Write the small seed files under fuzz/corpus/ (standard library only; the
JPEG seeds are written by libjpeg through a throwaway C program). The seeds
are committed; run this only to regenerate them: python3 fuzz/gen_corpus.py"""
import json, os, struct, subprocess, zlib

here = os.path.dirname(os.path.abspath(__file__))
C = os.path.join(here, "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(C, target), exist_ok=True)
    with open(os.path.join(C, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- safetensors ----
def safetensors(tensors, meta=None, pad=True):
    hdr, off, blob = {}, 0, b""
    for name, dtype, shape, raw in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blob += raw
    if meta:
        hdr["__metadata__"] = meta
    h = json.dumps(hdr).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


f32 = lambda *v: struct.pack("<%df" % len(v), *v)
put("safetensors", "f32.safetensors", safetensors([("w", "F32", [2, 2], f32(1, 2, 3, 4)),
                                                    ("b", "F32", [2], f32(0.5, -1))],
                                                   {"format": "pt"}))
put("safetensors", "f16_bf16.safetensors", safetensors([("h", "F16", [3], struct.pack("<3e", 1, -2, 0.5)),
                                                         ("bf", "BF16", [2], b"\x80\x3f\x00\xc0")]))
put("safetensors", "i64_scalar.safetensors", safetensors([("n", "I64", [], struct.pack("<q", 7)),
                                                           ("e", "F32", [0], b"")]))

# ---- npz ----
def npy(descr, shape, raw, version=1):
    d = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (
        descr, "(" + "".join("%d," % s for s in shape) + ")" if len(shape) == 1 else str(tuple(shape)))
    pre = 10 if version == 1 else 12
    h = d.encode() + b" " * (-(pre + len(d) + 1) % 64) + b"\n"
    ln = struct.pack("<H", len(h)) if version == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([version, 0]) + ln + h + raw


def npz(members, deflate):
    out, cd = b"", b""
    for name, data in members:
        crc = zlib.crc32(data)
        if deflate:
            co = zlib.compressobj(6, zlib.DEFLATED, -15)
            comp = co.compress(data) + co.flush()
            method = 8
        else:
            comp, method = data, 0
        nb = name.encode()
        lh = struct.pack("<IHHHHHIIIHH", 0x04034b50, 20, 0, method, 0, 0, crc, len(comp), len(data), len(nb), 0)
        cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 20, 20, 0, method, 0, 0, crc, len(comp), len(data),
                          len(nb), 0, 0, 0, 0, 0, len(out)) + nb
        out += lh + nb + comp
    eocd = struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, len(members), len(members), len(cd), len(out), 0)
    return out + cd + eocd


imgs = npy("|u1", [2, 2, 2], bytes(range(8)))
labels = npy("<i8", [2, 1], struct.pack("<2q", 0, 1))
put("npz", "stored.npz", npz([("x.npy", imgs), ("y.npy", labels)], False))
put("npz", "deflated.npz", npz([("train_images.npy", imgs), ("train_labels.npy", labels)], True))
put("npz", "f4_v2.npz", npz([("a.npy", npy("<f4", [3], f32(1, 2, 3), 2)), ("b.npy", npy(">i2", [2], b"\x00\x01\x00\x02"))], False))
put("npz", "bool_scalar.npz", npz([("s.npy", npy("|b1", [], b"\x01"))], True))

# ---- PNG ----
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))


def png(w, h, depth, ctype, rows, extra=b""):
    raw = b"".join(b"\x00" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)) + extra
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# The fuzz target's first byte picks the channel count (0, 1, 3).
put("image", "gray8.png", b"\x00" + png(2, 2, 8, 0, [b"\x00\xff", b"\x80\x40"]))
put("image", "gray16.png", b"\x01" + png(2, 1, 16, 0, [b"\x00\x00\xff\xff"]))
put("image", "gray1.png", b"\x02" + png(8, 1, 1, 0, [b"\xa5"]))
put("image", "rgb8.png", b"\x00" + png(1, 2, 8, 2, [b"\xff\x00\x00", b"\x00\x00\xff"]))
put("image", "rgba8.png", b"\x01" + png(1, 1, 8, 6, [b"\x10\x20\x30\x40"]))
put("image", "graya16.png", b"\x02" + png(1, 1, 16, 4, [b"\x12\x34\xff\xff"]))
put("image", "palette_trns.png", b"\x00" + png(2, 1, 8, 3, [b"\x00\x01"],
                                               chunk(b"PLTE", b"\xff\x00\x00\x00\xff\x00") + chunk(b"tRNS", b"\x80")))
put("image", "palette2.png", b"\x02" + png(4, 1, 2, 3, [b"\x1b"], chunk(b"PLTE", b"\x00\x00\x00\xff\xff\xff\x80\x80\x80\x10\x20\x30")))
# JPEG seeds: written by libjpeg through a throwaway C program (cc -ljpeg).
JPEG_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <jpeglib.h>
int main(int argc, char **argv)
{
	int w = 9, h = 7, comps = atoi(argv[2]), prog = atoi(argv[3]), q = atoi(argv[4]);
	struct jpeg_compress_struct ci; struct jpeg_error_mgr jerr;
	unsigned char row[9 * 3];
	FILE *fp = fopen(argv[1], "wb");
	ci.err = jpeg_std_error(&jerr); jpeg_create_compress(&ci); jpeg_stdio_dest(&ci, fp);
	ci.image_width = w; ci.image_height = h; ci.input_components = comps;
	ci.in_color_space = comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
	jpeg_set_defaults(&ci); jpeg_set_quality(&ci, q, TRUE);
	if (prog) jpeg_simple_progression(&ci);
	jpeg_start_compress(&ci, TRUE);
	for (int y = 0; y < h; y++) {
		for (int x = 0; x < w * comps; x++) row[x] = (unsigned char)(x * 23 + y * 41);
		JSAMPROW r = row; jpeg_write_scanlines(&ci, &r, 1);
	}
	jpeg_finish_compress(&ci); jpeg_destroy_compress(&ci); fclose(fp); return 0;
}
"""
import tempfile
with tempfile.TemporaryDirectory() as td:
    src, exe = os.path.join(td, "j.c"), os.path.join(td, "j")
    with open(src, "w") as f:
        f.write(JPEG_C)
    if subprocess.run(["cc", src, "-o", exe, "-ljpeg"]).returncode == 0:
        for i, (comps, prog, q) in enumerate([(1, 0, 90), (3, 0, 90), (3, 1, 75), (3, 0, 20)]):
            out = os.path.join(td, "o.jpg")
            subprocess.run([exe, out, str(comps), str(prog), str(q)], check=True)
            with open(out, "rb") as f:
                put("image", "jpeg%d.jpg" % i, bytes([i % 3]) + f.read())

# ---- CSV ----
put("csv", "labels.csv", "path,label\nimg/0.png,0\nimg/1.png,1\n")
put("csv", "quoted.csv", '\ufeffname,"value, with comma",n\r\n"a ""q"" b","multi\nline",3.5\r\n\r\nx,y,-2\r\n')
put("csv", "noeol.csv", "a\n1e3\n  42  ")

# ---- YAML ----
for fn in sorted(os.listdir(os.path.join(here, "..", "etc", "iaprune"))):
    if fn.endswith(".yaml"):
        with open(os.path.join(here, "..", "etc", "iaprune", fn), "rb") as f:
            put("yaml", fn, f.read())
put("yaml", "anchors.yaml", "base: &b {a: 1, b: [x, y]}\nother:\n  <<: *b\n  c: !!str 3\nlist: [*b, *b]\n")
put("yaml", "flow.yaml", "{version: 1, model: {plugin: resnet18}, seed: 0x10, rate: .5e1, on: yes}\n")
