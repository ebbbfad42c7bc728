#!/usr/bin/env python3
"""The PyTorch (eager, f32, CPU) peer of bench/bench_train_step.cpp.

The same GPT-2 as nn/gpt.h, written nanoGPT-style: fused c_attn Linear, causal
attention with an explicit mask + softmax, GELU (tanh), pre-LN blocks, final
LayerNorm, LM head tied to wte. Same batch (B, T) windows of the same byte file
(DESIGN.md's data contract), AdamW over every parameter with the same betas and
weight decay, and one training step = zero_grad, loss, backward, optimizer step.

    /usr/bin/python3 bench/torch_gpt.py --threads 1 --steps 10 --warmup 3

Prints, among human-readable lines, one machine-readable line:
    TORCH_MS_PER_STEP <median ms over the timed steps>
(and TORCH_MS_BEST <fastest step>, TORCH_CPU_MS <median process CPU time>),
which bench_train_step parses. --batch/--seq/--n-layer/--n-head/--n-embd set
the shape (bench_train_step's tiny and GPT-2-width rows).

Attention: `--attn manual` (default) is the explicit-mask softmax path, which
is what torch 1.13 offers; `--attn auto` uses F.scaled_dot_product_attention
when this torch has it (2.0+) and falls back to manual otherwise.
AdamW: foreach=False (the single-tensor for-loop, torch's default on CPU) unless
`--foreach`.
"""
import argparse
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, C, n_head, T, use_sdpa):
        super().__init__()
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.n_head = n_head
        self.use_sdpa = use_sdpa
        self.register_buffer("mask", torch.tril(torch.ones(T, T, dtype=torch.bool)).view(1, 1, T, T))

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        if self.use_sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf"))
            att = F.softmax(att, dim=-1)
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.c_fc = nn.Linear(C, 4 * C)
        self.c_proj = nn.Linear(4 * C, C)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, C, n_head, T, use_sdpa):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C)
        self.attn = CausalSelfAttention(C, n_head, T, use_sdpa)
        self.ln_2 = nn.LayerNorm(C)
        self.mlp = MLP(C)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, V, T, L, H, C, use_sdpa):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(T, C)
        self.h = nn.ModuleList(Block(C, H, T, use_sdpa) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        self.lm_head = nn.Linear(C, V, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        # GPT-2 init: N(0, 0.02), zero biases, residual projections / sqrt(2L).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * L))
            elif p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.02)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        B, T = idx.shape
        pos = torch.arange(T, dtype=torch.long)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--data", default="data/tinyshakespeare.txt")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--attn", choices=["manual", "auto"], default="manual")
    ap.add_argument("--foreach", action="store_true", help="AdamW(foreach=True)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(1337)
    B, T = args.batch, args.seq
    use_sdpa = args.attn == "auto" and hasattr(F, "scaled_dot_product_attention")

    with open(args.data, "rb") as f:
        raw = f.read()
    train = torch.frombuffer(bytearray(raw[: int(len(raw) * 0.9)]), dtype=torch.uint8).long()
    windows = (train.numel() - 1) // (B * T)

    def batch(step):  # DESIGN.md data contract, one rank
        o = (step % windows) * B * T
        chunk = train[o : o + B * T + 1]
        return chunk[:-1].view(B, T), chunk[1:].view(B, T)

    model = GPT(args.vocab, T, args.n_layer, args.n_head, args.n_embd, use_sdpa)
    model.train()
    kw = dict(lr=args.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    try:
        opt = torch.optim.AdamW(model.parameters(), foreach=args.foreach, **kw)
    except TypeError:  # a torch without the foreach argument
        opt = torch.optim.AdamW(model.parameters(), **kw)

    n_params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"attention {'sdpa' if use_sdpa else 'manual (mask + softmax)'}, "
          f"AdamW foreach={args.foreach}, {n_params} parameters")

    times, cpu_times, losses, phases = [], [], [], []
    for step in range(args.warmup + args.steps):
        x, y = batch(step)
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        t_fwd = time.perf_counter()
        loss.backward()
        t_bwd = time.perf_counter()
        opt.step()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        losses.append(loss.item())
        if step >= args.warmup:
            times.append(dt * 1e3)
            cpu_times.append(dc * 1e3)
            phases.append(((t_fwd - t0) * 1e3, (t_bwd - t_fwd) * 1e3, (t0 + dt - t_bwd) * 1e3))
    med = statistics.median(times)
    print(f"torch loss: first {losses[0]:.4f}, last {losses[-1]:.4f}; "
          f"CPU {statistics.median(cpu_times):.1f} ms/step (process CPU time, all threads)")
    print(f"TORCH_MS_PER_STEP {med:.3f}")
    print(f"TORCH_MS_BEST {min(times):.3f}")
    print(f"TORCH_CPU_MS {statistics.median(cpu_times):.3f}")
    # Medians of forward (with zero_grad and the loss), backward, optimizer step.
    print("TORCH_PHASES " + " ".join(f"{statistics.median(p[i] for p in phases):.3f}"
                                     for i in range(3)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
