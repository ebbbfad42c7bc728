#!/usr/bin/python3
"""PyTorch reference for minispeed's C++ GPT, written out as committed data.

Run from anywhere:  /usr/bin/python3 tests/ref/gpt_ref.py   (Debian's python3-torch)

Writes, next to this script:
  gpt_init.safetensors  initial weights, Hugging Face GPT-2 names and layout
  gpt_ref.safetensors   step-0 batch, logits, loss, gradients, and the weights/losses
                        after 3 steps of SGD and 3 steps of AdamW

Everything is float32, one thread, seeded, so reruns give the same numbers on the same
PyTorch build. See README.md in this folder for the exact contract.

Choices a C++ implementation must mirror:
  * GPT-2 pre-LN blocks, LayerNorm eps 1e-5, GELU tanh approximation, no dropout,
    lm_head tied to wte (logits = x @ wte^T, no bias); wte's gradient is the sum of
    the embedding-lookup part and the lm_head part.
  * Loss: cross entropy, mean over all B*T tokens.
  * Linear weights are stored [in, out] (HF Conv1D layout), i.e. the transpose of
    torch.nn.Linear.weight; their gradients are stored the same way.
  * SGD: torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.01), dampening 0,
    no Nesterov: g += wd*p; buf = g (first step) else buf = 0.9*buf + g; p -= lr*buf.
  * AdamW: torch.optim.AdamW(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1),
    weight decay applied to ALL parameters (biases, LayerNorm and embeddings included,
    no no-decay group) -- a deliberate simplification so the C++ side needs no
    parameter groups. Decoupled: p *= 1 - lr*wd; m,v updated; bias-corrected
    p -= lr * m_hat / (sqrt(v_hat) + eps).
  * Each optimizer step s = 0, 1, 2 uses the batch of data step s; zero_grad,
    loss.backward, step. Recorded losses are the losses computed before each step.
"""
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DATA = os.path.join(REPO, "data", "tinyshakespeare.txt")

# ---------------------------------------------------------------- config
V = 256        # vocab_size (bytes)
N_LAYER = 2
N_HEAD = 2
C = 32         # n_embd
BLOCK = 16     # block_size (max positions)
B = 2
T = 16
SEED = 1337
N_STEPS = 3
SGD_KW = dict(lr=0.1, momentum=0.9, weight_decay=0.01)
ADAMW_KW = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
PERTURB = 0.02  # noise added to all biases and LayerNorm params after GPT-2 init


# ---------------------------------------------------------------- model
class CausalSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn = nn.Linear(C, 3 * C, bias=True)
        self.c_proj = nn.Linear(C, C, bias=True)
        self.register_buffer("mask", torch.tril(torch.ones(BLOCK, BLOCK, dtype=torch.bool)))

    def forward(self, x):
        Bx, Tx, Cx = x.shape
        hs = Cx // N_HEAD
        q, k, v = self.c_attn(x).split(Cx, dim=2)           # q, k, v in that order
        q = q.view(Bx, Tx, N_HEAD, hs).transpose(1, 2)       # (B, nh, T, hs)
        k = k.view(Bx, Tx, N_HEAD, hs).transpose(1, 2)
        v = v.view(Bx, Tx, N_HEAD, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(~self.mask[:Tx, :Tx], float("-inf"))
        att = F.softmax(att, dim=-1)
        y = att @ v                                           # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(Bx, Tx, Cx)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc = nn.Linear(C, 4 * C, bias=True)
        self.c_proj = nn.Linear(4 * C, C, bias=True)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.attn = CausalSelfAttention()
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.mlp = MLP()

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(BLOCK, C)
        self.h = nn.ModuleList([Block() for _ in range(N_LAYER)])
        self.ln_f = nn.LayerNorm(C, eps=1e-5)

    def forward(self, idx, targets=None):
        Bx, Tx = idx.shape
        pos = torch.arange(Tx, dtype=torch.long)
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.h:
            x = blk(x)
        x = self.ln_f(x)
        logits = x @ self.wte.weight.t()                     # tied lm_head, no bias
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, V), targets.view(-1))
        return logits, loss


def gpt2_init(model):
    std = 0.02
    for name, p in model.named_parameters():
        if name.endswith(".bias"):
            nn.init.zeros_(p)
        elif ".ln_" in name or name.startswith("ln_f"):
            nn.init.ones_(p)                                 # LayerNorm weight
        elif name.endswith("c_proj.weight"):                 # residual projections
            nn.init.normal_(p, mean=0.0, std=std / math.sqrt(2 * N_LAYER))
        else:                                                # wte, wpe, c_attn, c_fc
            nn.init.normal_(p, mean=0.0, std=std)
    # Perturb every bias and LayerNorm parameter so zero biases / unit gains can't
    # make a wrong implementation pass by accident.
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_ln = ".ln_" in name or name.startswith("ln_f")
            if name.endswith(".bias") or is_ln:
                p.add_(PERTURB * torch.randn_like(p))


# ---------------------------------------------------------------- HF layout
def is_linear_weight(name):
    return name.endswith(".weight") and any(
        s in name for s in ("c_attn", "c_proj", "c_fc"))


def to_hf(named):
    """torch names/layout -> HF GPT-2 names/layout ([in, out] for linear weights)."""
    out = {}
    for name, t in named:
        t = t.detach()
        if is_linear_weight(name):
            t = t.t()
        out[name] = t.contiguous().clone()
    return out


def load_hf(model, hf):
    with torch.no_grad():
        for name, p in model.named_parameters():
            t = hf[name]
            if is_linear_weight(name):
                t = t.t()
            assert p.shape == t.shape, (name, p.shape, t.shape)
            p.copy_(t)


def hf_params(model):
    return to_hf(model.named_parameters())


def hf_grads(model):
    return to_hf((n, p.grad) for n, p in model.named_parameters())


# ---------------------------------------------------------------- safetensors
_DT = {torch.float32: "F32", torch.int32: "I32", torch.float64: "F64", torch.int64: "I64"}
_TD = {v: k for k, v in _DT.items()}


def save_safetensors(path, tensors, metadata=None):
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _DT[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for raw in blobs:
            f.write(raw)


def load_safetensors(path):
    """Tiny independent reader (used for the self-check)."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = buf[8 + n:]
    out = {}
    end_max = 0
    for name, info in header.items():
        b, e = info["data_offsets"]
        end_max = max(end_max, e)
        dt = _TD[info["dtype"]]
        t = torch.frombuffer(bytearray(data[b:e]), dtype=dt).reshape(info["shape"])
        out[name] = t
    assert end_max == len(data), "trailing/missing bytes"
    return out, meta


# ---------------------------------------------------------------- data
def load_tokens():
    with open(DATA, "rb") as f:
        raw = f.read()
    return torch.tensor(list(raw), dtype=torch.long)


def get_batch(buf, s):
    """Data contract, one process (D=1, r=0)."""
    off = s * B * T
    if off + B * T + 1 > len(buf):
        off = 0
    x = buf[off:off + B * T].view(B, T)
    y = buf[off + 1:off + B * T + 1].view(B, T)
    return x, y


# ---------------------------------------------------------------- training
def train(init_hf, buf, make_opt):
    model = GPT()
    load_hf(model, init_hf)
    opt = make_opt(model.parameters())
    losses = []
    for s in range(N_STEPS):
        x, y = get_batch(buf, s)
        opt.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return hf_params(model), torch.tensor(losses, dtype=torch.float32)


# ---------------------------------------------------------------- self-checks
def loss_f64(hf, x, y):
    m = GPT().double()
    load_hf(m, {k: v.double() for k, v in hf.items()})
    with torch.no_grad():
        _, loss = m(x, y)
    return loss.item()


def self_check(init_path, ref_path, buf):
    init, meta = load_safetensors(init_path)
    ref, rmeta = load_safetensors(ref_path)
    assert meta["n_layer"] == str(N_LAYER) and meta["vocab_size"] == str(V)
    x, y = ref["x"].long(), ref["y"].long()
    x0, y0 = get_batch(buf, 0)
    assert torch.equal(x, x0) and torch.equal(y, y0)

    # 1) reload the written init weights (HF layout) into a fresh model: same logits/loss
    m = GPT()
    load_hf(m, init)
    logits, loss = m(x, y)
    assert torch.allclose(logits, ref["logits"], rtol=0, atol=1e-6), "logits mismatch"
    assert abs(loss.item() - ref["loss"].item()) < 1e-6, "loss mismatch"

    # 2) tied wte gradient = embedding part + lm_head part (untied recomputation)
    loss.backward()
    emb = init["wte.weight"].clone().requires_grad_(True)
    head = init["wte.weight"].clone().requires_grad_(True)
    m2 = GPT()
    load_hf(m2, init)
    h = emb[x] + m2.wpe(torch.arange(T))
    for blk in m2.h:
        h = blk(h)
    h = m2.ln_f(h)
    l2 = F.cross_entropy((h @ head.t()).view(-1, V), y.view(-1))
    l2.backward()
    tied_sum = emb.grad + head.grad
    assert torch.allclose(ref["grad.wte.weight"], tied_sum, rtol=1e-5, atol=1e-7), "tied grad"
    assert emb.grad.abs().sum() > 0 and head.grad.abs().sum() > 0
    unused = [t for t in range(V) if t not in set(x.flatten().tolist())]
    assert torch.count_nonzero(emb.grad[unused]) == 0  # only lm_head reaches unused rows

    # 3) finite differences in float64 on stored (HF-layout) weights vs stored grads:
    #    checks the [in, out] transposes of weights and grads, and both wte paths.
    used_tok = int(x[0, 0])
    checks = [
        ("wte.weight", (used_tok, 3)),          # embedding + lm_head path
        ("wte.weight", (unused[0], 5)),         # lm_head path only
        ("wpe.weight", (2, 7)),
        ("h.0.attn.c_attn.weight", (1, 70)),    # [in, out]: in=1, out=70 (a v column)
        ("h.0.attn.c_attn.weight", (30, 40)),   # a k column
        ("h.0.attn.c_attn.bias", (10,)),        # a q entry
        ("h.1.attn.c_proj.weight", (5, 17)),
        ("h.0.mlp.c_fc.weight", (31, 100)),
        ("h.1.mlp.c_proj.weight", (120, 3)),
        ("h.1.mlp.c_fc.bias", (64,)),
        ("h.0.ln_1.weight", (4,)),
        ("h.1.ln_2.bias", (9,)),
        ("ln_f.weight", (0,)),
        ("ln_f.bias", (31,)),
    ]
    eps = 1e-6
    worst = 0.0
    for name, idx in checks:
        hp = {k: v.double().clone() for k, v in init.items()}
        hm = {k: v.double().clone() for k, v in init.items()}
        hp[name][idx] += eps
        hm[name][idx] -= eps
        fd = (loss_f64(hp, x, y) - loss_f64(hm, x, y)) / (2 * eps)
        g = ref["grad." + name][idx].item()
        err = abs(fd - g) / max(1e-3, abs(fd) + abs(g))
        worst = max(worst, err)
        assert err < 1e-3, (name, idx, fd, g)
    # 4) all parameter names present with the right shapes
    for name, t in init.items():
        for pre in ("grad.", "sgd3.", "adamw3."):
            assert ref[pre + name].shape == t.shape, (pre, name)
    return worst


# ---------------------------------------------------------------- main
def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)

    buf = load_tokens()
    model = GPT()
    gpt2_init(model)
    init_hf = hf_params(model)
    n_params = sum(t.numel() for t in init_hf.values())

    meta = {"n_layer": str(N_LAYER), "n_head": str(N_HEAD), "n_embd": str(C),
            "block_size": str(BLOCK), "vocab_size": str(V)}
    init_path = os.path.join(HERE, "gpt_init.safetensors")
    ref_path = os.path.join(HERE, "gpt_ref.safetensors")
    save_safetensors(init_path, init_hf, meta)

    # forward/backward on step 0's batch from the initial weights
    x, y = get_batch(buf, 0)
    logits, loss = model(x, y)
    loss.backward()
    grads = hf_grads(model)

    sgd_w, sgd_losses = train(init_hf, buf, lambda p: torch.optim.SGD(p, **SGD_KW))
    adw_w, adw_losses = train(init_hf, buf, lambda p: torch.optim.AdamW(p, **ADAMW_KW))
    assert abs(sgd_losses[0].item() - loss.item()) < 1e-6
    assert abs(adw_losses[0].item() - loss.item()) < 1e-6

    ref = {
        "x": x.to(torch.int32), "y": y.to(torch.int32),
        "logits": logits.detach(), "loss": loss.detach().reshape(1),
        "sgd_losses": sgd_losses, "adamw_losses": adw_losses,
    }
    for n, t in grads.items():
        ref["grad." + n] = t
    for n, t in sgd_w.items():
        ref["sgd3." + n] = t
    for n, t in adw_w.items():
        ref["adamw3." + n] = t
    ref_meta = dict(meta)
    ref_meta.update({
        "batch": str(B), "seq_len": str(T), "seed": str(SEED),
        "torch_version": torch.__version__,
        "sgd": "lr=0.1 momentum=0.9 weight_decay=0.01 (all params)",
        "adamw": "lr=1e-3 betas=(0.9,0.95) eps=1e-8 weight_decay=0.1 (all params)",
        "steps": str(N_STEPS),
    })
    save_safetensors(ref_path, ref, ref_meta)

    worst = self_check(init_path, ref_path, buf)

    print(f"torch {torch.__version__}, python {sys.version.split()[0]}")
    print(f"config: V={V} n_layer={N_LAYER} n_head={N_HEAD} n_embd={C} "
          f"block_size={BLOCK} B={B} T={T}; {n_params} params")
    print(f"step-0 loss        {loss.item():.6f}   (ln(256) = {math.log(256):.6f})")
    print("sgd losses        ", " ".join(f"{v:.6f}" for v in sgd_losses.tolist()))
    print("adamw losses      ", " ".join(f"{v:.6f}" for v in adw_losses.tolist()))
    print(f"|grad wte| = {grads['wte.weight'].norm():.6e}, "
          f"|grad h.0.attn.c_attn.weight| = {grads['h.0.attn.c_attn.weight'].norm():.6e}")
    print(f"self-check OK (reload, tied wte grad, f64 finite differences: worst rel err "
          f"{worst:.2e})")
    for p in (init_path, ref_path):
        print(f"wrote {os.path.relpath(p, REPO)} ({os.path.getsize(p)} bytes)")


if __name__ == "__main__":
    main()
