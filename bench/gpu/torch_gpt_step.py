#!/usr/bin/env python3
"""PyTorch eager on the GPU: one GPT-2 training step (zero_grad, loss, backward,
AdamW), the peer of `minispeed train --device cuda` at the same shape.

The model is bench/torch_gpt.py's (nanoGPT-style, the same GPT-2 as
nn/gpt.h: fused c_attn, GELU tanh, pre-LN, tied LM head), moved to the GPU.
Precisions, as issue 21 names them:
  fp32  f32 everywhere, torch.backends.cuda.matmul.allow_tf32 = False
  tf32  f32 storage, TF32 tensor-core GEMMs (allow_tf32 = True)
  bf16  torch.autocast(bfloat16) over the forward and loss, f32 master weights
--sdpa uses F.scaled_dot_product_attention (flash / memory-efficient) instead
of the explicit mask + softmax. Inputs are random tokens: only time matters.

    python3 bench/gpu/torch_gpt_step.py --n-layer 12 --n-head 12 --n-embd 768 \
        --seq 1024 --batch 8 --precision bf16 --sdpa

Prints one machine-readable line:
    TORCH_GPU_STEP precision=bf16 sdpa=1 ms=39.6 tok_s=206900 tflops=... frac_peak=...
Model FLOPs per step are cli/flops.h's: 6·N·tokens + 12·L·T·C·tokens.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# Dense datasheet peaks (FLOP/s) by precision; the name is nvidia-smi's.
PEAKS = {
    "H200": {"fp32": 67e12, "tf32": 494e12, "bf16": 989e12},
    "H100 80GB HBM3": {"fp32": 67e12, "tf32": 494e12, "bf16": 989e12},  # SXM
    "H100 PCIe": {"fp32": 51e12, "tf32": 378e12, "bf16": 756e12},
    "H100 NVL": {"fp32": 60e12, "tf32": 418e12, "bf16": 835e12},
}


def peak_for(name, precision):
    for key, peaks in PEAKS.items():
        if key in name:
            return peaks[precision]
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32")
    ap.add_argument("--sdpa", action="store_true")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from torch_gpt import GPT

    if not torch.cuda.is_available():
        sys.exit("torch_gpt_step: torch.cuda.is_available() is False; nothing to time")
    dev = torch.device("cuda")

    def forward(self, idx, targets):  # torch_gpt.GPT.forward with positions on idx's device
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    GPT.forward = forward
    tf32 = args.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.manual_seed(1337)
    L, H, C, T, B, V = args.n_layer, args.n_head, args.n_embd, args.seq, args.batch, args.vocab
    model = GPT(V, T, L, H, C, args.sdpa).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    idx = torch.randint(0, V, (B, T), device=dev)
    tgt = torch.randint(0, V, (B, T), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        if args.precision == "bf16":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(idx, tgt)
        else:
            loss = model(idx, tgt)
        loss.backward()
        opt.step()

    times = []
    for i in range(args.warmup + args.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1e3
    n_params = sum(p.numel() for p in model.parameters())  # tied wte counted once
    tokens = B * T
    flops = 6.0 * n_params * tokens + 12.0 * L * T * C * tokens
    tflops = flops / (ms * 1e-3) / 1e12
    name = torch.cuda.get_device_name(0)
    peak = peak_for(name, args.precision)
    frac = f"{tflops * 1e12 / peak:.3f}" if peak else "unknown"
    print(f"# {name}, torch {torch.__version__}, L{L} H{H} C{C} T{T} B{B} V{V}, "
          f"{n_params / 1e6:.1f}M parameters, median of {args.steps} steps after {args.warmup}")
    print(f"TORCH_GPU_STEP precision={args.precision} sdpa={int(args.sdpa)} ms={ms:.2f} "
          f"tok_s={tokens / (ms * 1e-3):.0f} tflops={tflops:.2f} frac_peak={frac}")


if __name__ == "__main__":
    main()
