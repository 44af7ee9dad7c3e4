"""The official code's transformer block (timm / MAE style, PyTorch) timed like bench.block_training_rate.

  python scripts/torch_block.py [SEQUENCES TOKENS DIM HEADS]

Needs PyTorch, which hacm_tf does not install (e.g. in a separate venv: pip install torch==2.13.0);
`python scripts/benchmark.py --suite=reference --torch_python=VENV/bin/python` runs it. Prints one
JSON line: PyTorch's float32 2048² matmul peak and the block's training-step ms and GFLOP/s.
"""

import json
import sys
import time

try:
    import torch
    from torch import nn
except ImportError:
    sys.exit("scripts/torch_block.py needs PyTorch, which hacm_tf does not install: "
             "pip install torch==2.13.0 (in a separate venv) and pass that python as --torch_python")


class Block(nn.Module):
    """Pre-norm block as in the official code: x + proj(attn(LN(x))), x + fc2(GELU(fc1(LN(x))))."""

    def __init__(self, dim, heads, mlp_ratio=4.0):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, int(dim * mlp_ratio)), nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm2(x))))


def median_seconds(fn, steps, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main(sequences=64, tokens=432, dim=256, heads=8, steps=5, warmup=2):
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    best = min(median_seconds(lambda: a @ b, 1, 0) for _ in range(10))
    block, x = Block(dim, heads), torch.randn(sequences, tokens, dim, requires_grad=True)

    def step():
        block.zero_grad()
        x.grad = None
        y = block(x)
        (y * y).mean().backward()

    med = median_seconds(step, steps, warmup)
    flops = 3.0 * sequences * (2 * tokens * (4 * dim * dim + 2 * dim * 4 * dim) + 4 * tokens * tokens * dim)
    print(json.dumps({"framework": f"pytorch {torch.__version__}", "threads": torch.get_num_threads(),
                      "matmul_peak_gflops": round(2 * 2048 ** 3 / best / 1e9, 1), "shape": [sequences, tokens, dim],
                      "heads": heads, "ms": round(1000 * med, 1), "gflops": round(flops / med / 1e9, 1)}))


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:5]])
