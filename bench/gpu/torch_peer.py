#!/usr/bin/env python3
"""PyTorch peer of bench/gpu/bench_gpu_kernels: the same ops at the same GPT-2
124M shapes, timed on the same GPU in the same run, printed side by side.

    python3 bench/gpu/torch_peer.py --ours build-cuda/bench/bench_gpu_kernels [--quick]

Runs our binary first (its JSON lines on stdout), then times PyTorch's version
of each op with CUDA events (warm-up, then the mean of back-to-back launches,
as the C++ side does), and prints one row per op:

    op  variant  ours_ms  torch_ms  ours/torch  (torch's variant)

ours/torch < 1 means we are faster. The fp32 / tf32 / bf16-compute GEMM rows
compare against torch.matmul under torch.set_float32_matmul_precision
"highest" / "high" / "medium" (PyTorch's names for exactly those three cuBLAS
compute modes); bf16-storage rows against bf16 tensors. Attention compares
against both the eager mask+softmax path and F.scaled_dot_product_attention.
With --json PATH the merged rows are also written as JSON.
"""
import argparse
import json
import subprocess
import sys


def parse_ours(text):
    rows, config, fractions = [], None, {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        if "config" in d:
            config = d["config"]
        elif "tiled_fraction_of_cublas_fp32" in d:
            fractions[d["op"]] = d["tiled_fraction_of_cublas_fp32"]
        else:
            rows.append(d)
    return config, rows, fractions


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", required=True, help="path to bench_gpu_kernels")
    ap.add_argument("--quick", action="store_true", help="B = 2 and fewer iterations (both sides)")
    ap.add_argument("--json", help="also write the merged rows here")
    args = ap.parse_args()

    cmd = [args.ours] + (["--quick"] if args.quick else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"torch_peer: {' '.join(cmd)} exited {proc.returncode}")
    config, ours, fractions = parse_ours(proc.stdout)
    if config is None:
        sys.exit("torch_peer: no config line in our bench's output")

    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        sys.exit("torch_peer: PyTorch is not installed here (pip install torch); our rows were:\n"
                 + proc.stdout)

    if not torch.cuda.is_available():
        sys.exit("torch_peer: torch sees no CUDA device")
    dev = torch.device("cuda")
    B, T, C, NH, V = (config[k] for k in ("B", "T", "C", "NH", "V"))
    BT, hs = B * T, C // NH
    iters = 3 if args.quick else 20

    def time_ms(f):
        for _ in range(2):
            f()
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(iters):
            f()
        b.record()
        b.synchronize()
        return a.elapsed_time(b) / iters

    g = torch.Generator(device=dev).manual_seed(0)

    def rand(*shape, scale=1.0, dtype=torch.float32):
        return ((torch.rand(*shape, generator=g, device=dev) * 2 - 1) * scale).to(dtype)

    torch_ms = {}  # (op, our variant) -> (ms, torch's variant)

    # ---- GEMMs: the same list as bench_gpu_kernels.cu ----
    shapes = [("qkv", False, False, BT, 3 * C, C), ("attn_proj", False, False, BT, C, C),
              ("fc", False, False, BT, 4 * C, C), ("fc_proj", False, False, BT, C, 4 * C),
              ("fc_dweight", True, False, C, 4 * C, BT), ("fc_dinp", False, True, BT, C, 4 * C),
              ("lm_head", False, True, BT, V, C)]
    precision_of = {"cublas_fp32": "highest", "cublas_tf32": "high", "cublas_bf16": "medium",
                    "tiled_fp32": "highest"}
    for name, ta, tb, M, N, K in shapes:
        a = rand(K, M, scale=0.1) if ta else rand(M, K, scale=0.1)
        bm = rand(N, K, scale=0.1) if tb else rand(K, N, scale=0.1)
        opa, opb = (a.t() if ta else a), (bm.t() if tb else bm)
        for variant, prec in precision_of.items():
            torch.set_float32_matmul_precision(prec)
            torch_ms[(f"gemm_{name}", variant)] = (time_ms(lambda: opa @ opb), f"matmul {prec}")
        torch.set_float32_matmul_precision("highest")
        a16, b16 = opa.bfloat16(), opb.bfloat16()
        torch_ms[(f"gemm_{name}", "cublas_bf16_storage")] = (time_ms(lambda: a16 @ b16), "matmul bf16")
        del a, bm, opa, opb, a16, b16

    # ---- attention: eager (materialized att, like ours) and SDPA, forward and backward ----
    qkv = rand(B, T, 3 * C).requires_grad_(True)
    dout = rand(B, T, C)

    def split(x):
        q, k, v = x.split(C, dim=2)
        return [t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v)]

    mask = torch.ones(T, T, device=dev, dtype=torch.bool).tril()

    def eager(x):
        q, k, v = split(x)
        att = (q @ k.transpose(-2, -1)) * (1.0 / hs ** 0.5)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        return (att @ v).transpose(1, 2).reshape(B, T, C)

    def sdpa(x):
        q, k, v = split(x)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)

    for label, fn in (("eager", eager), ("sdpa", sdpa)):
        fwd = time_ms(lambda: fn(qkv))
        out = fn(qkv)
        bwd = time_ms(lambda: torch.autograd.grad(out, qkv, dout, retain_graph=True))
        torch_ms[("attention_forward", f"ours_fp32|{label}")] = (fwd, f"{label} fp32")
        torch_ms[("attention_backward", f"ours_fp32|{label}")] = (bwd, f"{label} fp32")
        del out
    del qkv, dout

    # ---- LayerNorm, GELU ----
    x = rand(BT, C).requires_grad_(True)
    w, bias = rand(C).requires_grad_(True), rand(C).requires_grad_(True)
    torch_ms[("layernorm_forward", "ours_fp32")] = (time_ms(lambda: F.layer_norm(x, (C,), w, bias, 1e-5)), "F.layer_norm")
    y = F.layer_norm(x, (C,), w, bias, 1e-5)
    dy = rand(BT, C)
    torch_ms[("layernorm_backward", "ours_fp32")] = (
        time_ms(lambda: torch.autograd.grad(y, (x, w, bias), dy, retain_graph=True)), "autograd")
    del x, w, bias, y, dy
    h = rand(BT, 4 * C)
    torch_ms[("gelu_forward", "ours_fp32")] = (time_ms(lambda: F.gelu(h, approximate="tanh")), "F.gelu tanh")
    del h

    # ---- classifier: F.cross_entropy forward + backward (materializes softmax) ----
    logits = rand(BT, V, scale=4.0).requires_grad_(True)
    tgt = (torch.arange(BT, device=dev) * 7919) % V

    def ce():
        loss = F.cross_entropy(logits, tgt)
        torch.autograd.grad(loss, logits)

    ms_ce = time_ms(ce)
    torch_ms[("classifier", "ours_unfused_fwd_bwd")] = (ms_ce, "F.cross_entropy fwd+bwd")
    torch_ms[("classifier", "ours_fused")] = (ms_ce, "F.cross_entropy fwd+bwd")
    del logits

    # ---- AdamW over 124M parameters in one tensor ----
    p = torch.nn.Parameter(rand(124439808))
    p.grad = rand(124439808)
    opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.1, fused=True)
    torch_ms[("adamw", "ours_fp32")] = (time_ms(opt.step), "AdamW fused=True")

    # ---- the table ----
    merged = []
    print(f"# GPT-2 124M shapes: B={B} T={T} C={C} NH={NH} V={V}; device {torch.cuda.get_device_name()}")
    print(f"{'op':22s} {'ours':22s} {'ours ms':>9s} {'TFLOP/s':>8s} {'GB/s':>7s} {'torch ms':>9s} {'ours/torch':>10s}  torch")
    for r in ours:
        keys = [k for k in torch_ms if k[0] == r["op"] and k[1].split("|")[0] == r["variant"]]
        for key in keys or [None]:
            tms, tname = torch_ms[key] if key else (float("nan"), "-")
            ratio = r["ms"] / tms if key else float("nan")
            print(f"{r['op']:22s} {r['variant']:22s} {r['ms']:9.3f} {r['tflops']:8.1f} {r['gbps']:7.0f} "
                  f"{tms:9.3f} {ratio:10.2f}  {tname}")
            merged.append(dict(r, torch_ms=tms, torch_variant=tname, ratio=ratio))
    print("# hand-written tiled GEMM as a fraction of cuBLAS fp32 (1.0 = as fast):")
    for op, f in fractions.items():
        print(f"#   {op:20s} {f:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"config": config, "rows": merged, "tiled_fraction": fractions}, fh, indent=1)


if __name__ == "__main__":
    main()
