#!/usr/bin/env python3
"""Write tests/data/tiny.npz: a 48-image, two-class MedMNIST-layout archive
(28x28 gray) for tests that run the whole pipeline many times (the kill
test). Class 1 has a bright square, class 0 does not, so a tiny model learns
something in two epochs. Plain Python (no numpy): .npy is a short header
plus raw bytes."""
import random
import struct
import zipfile


def npy(shape, dtype, data):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        dtype, "".join("%d," % s for s in shape) if len(shape) == 1 else ", ".join(str(s) for s in shape))
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data


def split(rng, n):
    images, labels = bytearray(), bytearray()
    for i in range(n):
        label = i % 2
        img = [rng.randrange(0, 90) for _ in range(28 * 28)]
        if label:
            x, y = rng.randrange(4, 16), rng.randrange(4, 16)
            for r in range(y, y + 8):
                for c in range(x, x + 8):
                    img[r * 28 + c] = 200 + rng.randrange(0, 55)
        images += bytes(img)
        labels.append(label)
    return images, labels


def main():
    rng = random.Random(20)
    with zipfile.ZipFile("tiny.npz", "w", zipfile.ZIP_DEFLATED) as z:
        for name, n in (("train", 24), ("val", 8), ("test", 16)):
            images, labels = split(rng, n)
            z.writestr(name + "_images.npy", npy((n, 28, 28), "|u1", bytes(images)))
            z.writestr(name + "_labels.npy", npy((n, 1), "|u1", bytes(labels)))


if __name__ == "__main__":
    main()
