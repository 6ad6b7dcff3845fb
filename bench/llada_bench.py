#!/usr/bin/env python3
"""PyTorch counterpart of `workbench bench`: a short LLaDA forward (the Hugging Face
`modeling_llada.py` arithmetic: pre-RMSNorm in f32, RoPE, bidirectional SDPA attention, SwiGLU,
untied head), LLaDA's `generate.py` loop (low-confidence remasking, semi-autoregressive blocks,
float64 Gumbel noise over the full [B, L, V] logits at T > 0) and d1's one-step estimator
(full-canvas logits, cross-entropy at the completion positions), timed the same way.

Run by hand where torch is installed (never a CI or runtime dependency):

    python3 bench/llada_bench.py --check-fixtures tests/fixtures      # logits vs the golden file
    python3 bench/llada_bench.py --make-model /tmp/m --shape bench     # random checkpoint
    python3 bench/llada_bench.py --model /tmp/m --targets forward,generate,generate_t1,d1

Prints one JSON object per target (same names and fields as `workbench bench`).
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

SHAPES = {
    "bench": dict(d_model=256, n_layers=6, n_heads=8, mlp_hidden_size=704, vocab_size=8192),
    "tiny": dict(d_model=64, n_layers=2, n_heads=4, mlp_hidden_size=160, vocab_size=1000),
}


class Llada(torch.nn.Module):
    """LLaDA's Llama-style bidirectional block stack, weights by checkpoint name."""

    def __init__(self, cfg, weights):
        super().__init__()
        self.cfg = cfg
        self.d = cfg["d_model"]
        self.h = cfg["n_heads"]
        self.kvh = cfg.get("n_kv_heads") or self.h
        self.hd = self.d // self.h
        self.eps = cfg.get("rms_norm_eps", 1e-5)
        self.theta = cfg.get("rope_theta", 10000.0)
        self.w = torch.nn.ParameterDict(
            {k.replace(".", "__"): torch.nn.Parameter(v.float()) for k, v in weights.items()}
        )

    def p(self, name):
        return self.w[("model.transformer." + name + ".weight").replace(".", "__")]

    def rms(self, x, w):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.to(x.dtype) * w

    def rope(self, q, k):
        L = q.shape[-2]
        inv = 1.0 / (self.theta ** (torch.arange(0, self.hd, 2, dtype=torch.float) / self.hd))
        freqs = torch.outer(torch.arange(L, dtype=torch.float), inv)
        pos = torch.cat((freqs, freqs), dim=-1)
        cos, sin = pos.cos()[None, None], pos.sin()[None, None]

        def rot(x):
            x1, x2 = x.chunk(2, dim=-1)
            return torch.cat((-x2, x1), dim=-1)

        return (q * cos + rot(q) * sin).to(q.dtype), (k * cos + rot(k) * sin).to(k.dtype)

    def hidden(self, ids, attention_mask=None):
        B, L = ids.shape
        x = F.embedding(ids, self.p("wte"))
        bias = None
        if attention_mask is not None:
            bias = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float).min
        for i in range(self.cfg["n_layers"]):
            b = f"blocks.{i}."
            h = self.rms(x, self.p(b + "attn_norm"))
            q = F.linear(h, self.p(b + "q_proj")).view(B, L, self.h, self.hd).transpose(1, 2)
            k = F.linear(h, self.p(b + "k_proj")).view(B, L, self.kvh, self.hd).transpose(1, 2)
            v = F.linear(h, self.p(b + "v_proj")).view(B, L, self.kvh, self.hd).transpose(1, 2)
            q, k = self.rope(q, k)
            if self.kvh != self.h:
                k = k.repeat_interleave(self.h // self.kvh, dim=1)
                v = v.repeat_interleave(self.h // self.kvh, dim=1)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=False)
            x = x + F.linear(a.transpose(1, 2).reshape(B, L, self.d), self.p(b + "attn_out"))
            m = self.rms(x, self.p(b + "ff_norm"))
            g = F.silu(F.linear(m, self.p(b + "ff_proj"))) * F.linear(m, self.p(b + "up_proj"))
            x = x + F.linear(g, self.p(b + "ff_out"))
        return self.rms(x, self.p("ln_f"))

    def forward(self, ids, attention_mask=None):
        head = "ff_out" if not self.cfg.get("weight_tying") else "wte"
        return F.linear(self.hidden(ids, attention_mask), self.p(head))


def load(dir_):
    cfg = json.load(open(os.path.join(dir_, "config.json")))
    return Llada(cfg, load_file(os.path.join(dir_, "model.safetensors")))


def make_model(dir_, shape, seed):
    s = SHAPES[shape]
    v = s["vocab_size"]
    cfg = dict(s, n_kv_heads=s["n_heads"], embedding_size=v, rope_theta=10000.0,
               rms_norm_eps=1e-5, mask_token_id=v - 1, eos_token_id=v - 6, pad_token_id=v - 6,
               weight_tying=False, init_std=0.02, max_sequence_length=4096,
               model_type="llada", block_type="llama", activation_type="silu",
               layer_norm_type="rms", rope=True, alibi=False, include_bias=False,
               mlp_ratio=4)
    g = torch.Generator().manual_seed(seed)
    d, hdim = s["d_model"], s["mlp_hidden_size"]
    w = {"model.transformer.wte.weight": torch.randn(v, d, generator=g) * 0.02,
         "model.transformer.ln_f.weight": torch.ones(d),
         "model.transformer.ff_out.weight": torch.randn(v, d, generator=g) * 0.02}
    for i in range(s["n_layers"]):
        b = f"model.transformer.blocks.{i}."
        for n, shp in [("q_proj", (d, d)), ("k_proj", (d, d)), ("v_proj", (d, d)),
                       ("attn_out", (d, d)), ("ff_proj", (hdim, d)), ("up_proj", (hdim, d)),
                       ("ff_out", (d, hdim))]:
            w[b + n + ".weight"] = torch.randn(*shp, generator=g) * 0.02
        w[b + "attn_norm.weight"] = torch.ones(d)
        w[b + "ff_norm.weight"] = torch.ones(d)
    os.makedirs(dir_, exist_ok=True)
    save_file({k: t.contiguous() for k, t in w.items()}, os.path.join(dir_, "model.safetensors"))
    json.dump(cfg, open(os.path.join(dir_, "config.json"), "w"), indent=1)


def check_fixtures(dir_):
    model = load(os.path.join(dir_, "llada-tiny"))
    worst = 0.0
    with torch.no_grad():
        for name in ["logits_plain", "logits_padded"]:
            g = load_file(os.path.join(dir_, name + ".safetensors"))
            mask = g.get("attention_mask")
            out = model(g["input_ids"].long(), mask)
            diff = (out - g["logits"]).abs()
            if mask is not None:
                diff = diff * mask[..., None].float()
            d = diff.max().item()
            worst = max(worst, d)
            print(json.dumps({"target": "fixture_logits", "file": name, "max_abs_diff": d}))
    if worst > 1e-4:
        sys.exit(f"logits differ from the fixture by {worst}")


# LLaDA's generate.py, batched over rows.
def gumbel(logits, temperature):
    if temperature == 0:
        return logits
    logits = logits.to(torch.float64)
    noise = torch.rand_like(logits, dtype=torch.float64)
    return logits.exp() / (-torch.log(noise)) ** temperature


def transfer_counts(block_mask, steps):
    n = block_mask.sum(dim=1, keepdim=True)
    out = torch.zeros(n.size(0), steps, dtype=torch.int64) + n // steps
    for i in range(n.size(0)):
        out[i, : int(n[i] % steps)] += 1
    return out


@torch.no_grad()
def generate(model, prompt, steps, gen_length, block_length, temperature, mask_id):
    B, P = prompt.shape
    x = torch.full((B, P + gen_length), mask_id, dtype=torch.long)
    x[:, :P] = prompt
    n_blocks = gen_length // block_length
    per = steps // n_blocks
    nfe = 0
    for blk in range(n_blocks):
        lo, hi = P + blk * block_length, P + (blk + 1) * block_length
        counts = transfer_counts(x[:, lo:hi] == mask_id, per)
        for i in range(per):
            masked = x == mask_id
            logits = model(x)
            nfe += 1
            x0 = torch.argmax(gumbel(logits, temperature), dim=-1)
            p = F.softmax(logits, dim=-1)
            x0_p = torch.gather(p, -1, x0[..., None]).squeeze(-1)
            x0_p[:, hi:] = -math.inf
            x0 = torch.where(masked, x0, x)
            conf = torch.where(masked, x0_p, torch.tensor(-math.inf))
            transfer = torch.zeros_like(x0, dtype=torch.bool)
            for j in range(B):
                _, idx = torch.topk(conf[j], k=int(counts[j, i]))
                transfer[j, idx] = True
            x[transfer] = x0[transfer]
    return x, nfe


def d1_step(model, prompt, completion, mask_id, p_mask=0.15, seed=1):
    """d1's one-step estimator: completion fully masked, prompt tokens masked with p_mask;
    full-canvas logits, cross-entropy at the completion positions; backward on every weight."""
    seq = torch.cat([prompt, completion], dim=1)
    B, P = prompt.shape
    g = torch.Generator().manual_seed(seed)
    noisy = seq.clone()
    noisy[:, :P][torch.rand(B, P, generator=g) < p_mask] = mask_id
    noisy[:, P:] = mask_id
    t0 = time.perf_counter()
    logits = model(noisy)
    comp = logits[:, P:, :]
    logp = -F.cross_entropy(comp.reshape(-1, comp.shape[-1]).float(), completion.reshape(-1),
                            reduction="none").view(B, -1)
    loss = -logp.mean()
    t1 = time.perf_counter()
    model.zero_grad(set_to_none=True)
    loss.backward()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def ids(rows, length, vocab, salt):
    m = max(vocab - 8, 1)
    return torch.tensor([((i + salt) * 7919) % m for i in range(rows * length)]).view(rows, length)


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(max(iters, 1)):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return ts


def report(target, ts, tokens, **extra):
    med = statistics.median(ts)
    out = dict(target=target, median_s=med, min_s=min(ts), iters=len(ts),
               tokens_per_s=tokens / med)
    out.update(extra)
    print(json.dumps(out), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-fixtures")
    ap.add_argument("--make-model")
    ap.add_argument("--model")
    ap.add_argument("--shape", default="bench")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--targets", default="forward,generate,generate_t1,d1")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--forward-batch", type=int, default=2)
    ap.add_argument("--forward-len", type=int, default=160)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--train-batch", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.check_fixtures:
        check_fixtures(a.check_fixtures)
    if a.make_model:
        make_model(a.make_model, a.shape, a.seed)
    if not a.model:
        return
    torch.manual_seed(a.seed)
    model = load(a.model)
    vocab, mask_id = model.cfg["vocab_size"], model.cfg["mask_token_id"]
    for target in [t for t in a.targets.split(",") if t]:
        if target == "forward":
            x = ids(a.forward_batch, a.forward_len, vocab, 0)

            def fwd():
                with torch.no_grad():
                    model(x)

            report("forward", timed(fwd, a.warmup, a.iters), a.forward_batch * a.forward_len,
                   batch=a.forward_batch, len=a.forward_len)
        elif target in ("generate", "generate_t1"):
            temp = 1.0 if target == "generate_t1" else 0.0
            prompt = ids(a.batch, a.prompt, vocab, 3)
            box = {}

            def gen():
                box["out"], box["nfe"] = generate(model, prompt, a.steps, a.gen, a.block, temp,
                                                  mask_id)

            ts = timed(gen, a.warmup, a.iters)
            comp = box["out"][:, a.prompt:].tolist()
            report(target, ts, a.batch * a.gen, nfe=box["nfe"], temperature=temp,
                   completions=comp if temp == 0 else None)
        elif target == "d1":
            prompt = ids(a.train_batch, a.prompt, vocab, 1)
            completion = ids(a.train_batch, a.gen, vocab, 2)
            parts = []

            def step():
                parts.append(d1_step(model, prompt, completion, mask_id))

            ts = timed(step, a.warmup, a.iters)
            parts = parts[a.warmup:]
            report("d1", ts, a.train_batch * (a.prompt + a.gen),
                   forward_s=statistics.median(p[0] for p in parts),
                   backward_s=statistics.median(p[1] for p in parts))
        else:
            sys.exit(f"unknown target {target}")


if __name__ == "__main__":
    main()
