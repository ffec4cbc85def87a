"""Measure the CPU throughputs behind `slmsql train`'s time estimate (slmsql_cli/training/estimate.py).

A random Qwen2-shaped model (no download, no tokenizer) is trained for a few AdamW steps on
random token rows and then generates with `generate()`, in fp32 on torch's CPU threads; the
output is FLOP/s per thread by the 6·N (training) and 2·N (generation) rules, by the wall clock
and per CPU-second (the second is what a thread achieves on a core of its own: use it on a shared
machine).

  python benchmarks/train_cpu_throughput.py            # ~1 minute on 2 cores
  python benchmarks/train_cpu_throughput.py --hidden 896 --layers 24 --vocab 151936   # 0.5B shape
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--tokens", type=int, default=512, help="tokens per training row")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--generate", type=int, default=32, help="new tokens per sequence")
    parser.add_argument("--sequences", type=int, default=4, help="sequences generated together")
    args = parser.parse_args()

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    heads = max(args.hidden // 64, 1)
    config = Qwen2Config(
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 11 // 2,
        num_hidden_layers=args.layers,
        num_attention_heads=heads,
        num_key_value_heads=2 if heads % 2 == 0 else 1,  # grouped-query attention, as Qwen2.5
        vocab_size=args.vocab,
        tie_word_embeddings=True,
        max_position_embeddings=4096,
    )
    model = Qwen2ForCausalLM(config)
    n = sum(p.numel() for p in model.parameters())
    threads = torch.get_num_threads()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    rows = torch.randint(0, args.vocab, (args.batch, args.tokens))

    def step() -> None:
        loss = model(input_ids=rows, labels=rows).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()  # warm-up: allocations, optimizer state
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    train_s = (time.perf_counter() - start) / args.steps
    train_cpu = (time.process_time() - cpu) / args.steps
    train_flops = 6 * n * args.batch * args.tokens

    model.eval()
    prompt = torch.randint(0, args.vocab, (args.sequences, 64))
    with torch.no_grad():
        model.generate(prompt, max_new_tokens=2, min_new_tokens=2, do_sample=False)
        start, cpu = time.perf_counter(), time.process_time()
        model.generate(prompt, max_new_tokens=args.generate, min_new_tokens=args.generate, do_sample=False)
    gen_s, gen_cpu = time.perf_counter() - start, time.process_time() - cpu
    gen_flops = 2 * n * args.sequences * args.generate
    print(
        json.dumps(
            {
                "parameters": n,
                "threads": threads,
                "train_seconds_per_step": round(train_s, 3),
                "train_flops_per_thread": round(train_flops / train_s / threads),
                # per CPU-second: what a thread does when it has its core to itself (shared machines)
                "train_flops_per_cpu_second": round(train_flops / train_cpu),
                "generate_seconds": round(gen_s, 3),
                "generate_flops_per_thread": round(gen_flops / gen_s / threads),
                "generate_flops_per_cpu_second": round(gen_flops / gen_cpu),
            }
        )
    )


if __name__ == "__main__":
    main()
