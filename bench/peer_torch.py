#!/usr/bin/python3
"""PyTorch peer for bench_models: the same torchvision model, batch and thread
count, timed the same way (median of --reps after one warm-up).

Prints one line "fwd <seconds> grad <seconds>":
  fwd   forward under torch.no_grad() (eval mode)
  grad  forward with autograd on the input + backward of the predicted
        class's logit to the input, times the input (input x gradient)
Run by bench/bench_models; not a test.
"""
import argparse
import statistics
import time

import torch
import torchvision


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, choices=["vgg19", "resnet50", "vit_b_16"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = getattr(torchvision.models, a.model)().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(a.batch, 3, 224, 224) * 2 - 1

    def fwd():
        with torch.no_grad():
            model(x)

    def grad():
        xi = x.clone().requires_grad_(True)
        y = model(xi)
        t = y.argmax(dim=1)
        y.gather(1, t[:, None]).sum().backward()
        return (xi * xi.grad).detach()

    def timed(fn):
        fn()
        ts = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    print("fwd %.6f grad %.6f" % (timed(fwd), timed(grad)), flush=True)


if __name__ == "__main__":
    main()
