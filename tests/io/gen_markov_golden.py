#!/usr/bin/env python3
"""Generates markov_golden.inc: the synthetic Markov corpus as the PyTorch peer computes it
(class `Markov` of ../shared/reference/torch_gpt.py, spec in ../shared/reference/markov.md), for a
bit-for-bit comparison with include/mixtape/io/markov.hpp that needs no Python at test time.

    python3 tests/io/gen_markov_golden.py > tests/io/markov_golden.inc

Contents: for vocab 256 and 50304 (fanout 4, seed 1234), a few tokens' successors, weights,
probabilities and cumulative probabilities as exact hex doubles; the entropy rate; and batches of
streams 0, 1 and a few others from a fresh stream and in sequence (the first 64 tokens of streams 0
and 1 as one (1, 63) batch, then (2, 8), (3, 5) and (10, 4) batches), with the stream state after each.

`PeerMarkov` below is the peer's `Markov.__init__` / `stream` / `batch` transcribed line for line
without torch (torch is not installed where this file was made): the power iteration, which the
peer writes as `index_add_` over the flattened (V, F) edges, is the same accumulation written as a
loop, and `batch` returns lists instead of tensors. One deliberate difference: the peer's
`tot = sum(w)` is left-to-right only up to Python 3.11; from 3.12 on, `sum()` of floats is
compensated (Neumaier) and rounds differently for about 23% of tokens (one ulp in the probabilities).
The spec says "plain IEEE double operations in this order", so the sum is written out left to
right here and the file is the same under every Python. When torch is importable, the script also
runs the peer's own class and reports every difference on stderr.
Takes about 30 s (the peer's 500 power-iteration steps over 201,216 edges in pure Python).
"""
import math
import os
import sys

MASK64 = (1 << 64) - 1
PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "reference")


def splitmix64(state):  # torch_gpt.py, verbatim
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def sum_left_to_right(xs):
    total = 0
    for x in xs:
        total = total + x
    return total


class PeerMarkov:
    """torch_gpt.py's Markov without torch (see the module docstring)."""

    def __init__(self, vocab, fanout=4, seed=1234):
        s = seed
        self.succ, self.prob, self.weight = [], [], []
        for _ in range(vocab):
            nxt, w = [], []
            for _ in range(fanout):
                s, r = splitmix64(s)
                nxt.append(r % vocab)
                s, r = splitmix64(s)
                w.append(1.0 + (r >> 11) * (1.0 / (1 << 53)) * 3.0)
            tot = sum_left_to_right(w)  # peer: sum(w)
            self.succ.append(nxt)
            self.prob.append([x / tot for x in w])
            self.weight.append(w)  # kept for the golden file only
        # stationary distribution by power iteration, then entropy rate
        pi = [1.0 / vocab] * vocab
        for _ in range(500):
            nxt_pi = [0.0] * vocab  # peer: torch.zeros_like(pi).index_add_(0, succ, pi[:, None] * prob)
            for a in range(vocab):
                pa = pi[a]
                for b, p in zip(self.succ[a], self.prob[a]):
                    nxt_pi[b] += pa * p
            pi = nxt_pi
        h = 0.0
        for a in range(vocab):
            agg = {}
            for b, p in zip(self.succ[a], self.prob[a]):
                agg[b] = agg.get(b, 0.0) + p
            h -= float(pi[a]) * sum(p * math.log(p) for p in agg.values())
        self.entropy_rate = h
        self.seed = seed
        self.stream(0)

    def stream(self, k):
        self.state = ((self.seed ^ 0x5DEECE66D) + k * 0xD1B54A32D192ED03) & MASK64
        return self

    def batch(self, B, T):
        seqs = []
        for _ in range(B):
            self.state, r = splitmix64(self.state)
            tok = r % len(self.succ)
            seq = [tok]
            for _ in range(T):
                self.state, r = splitmix64(self.state)
                u = (r >> 11) * (1.0 / (1 << 53))
                acc, nxt = 0.0, self.succ[tok][-1]
                for b, p in zip(self.succ[tok], self.prob[tok]):
                    acc += p
                    if u < acc:
                        nxt = b
                        break
                tok = nxt
                seq.append(tok)
            seqs.append(seq)
        return [s[:-1] for s in seqs], [s[1:] for s in seqs]


# (stream, fresh, B, T): fresh restarts the stream first; otherwise the batch continues the last one.
BATCHES = [
    (0, True, 1, 63), (0, True, 2, 8), (0, False, 2, 8), (0, False, 3, 5), (0, False, 10, 4),
    (1, True, 1, 63), (1, True, 2, 8), (1, False, 2, 8),
    (2, True, 2, 8), (9, True, 2, 8),
]
VOCABS = [256, 50304]


def rows_for(vocab):
    return [0, 1, 2, vocab // 2 + 1, vocab - 1]


def cross_check(chains):
    """Runs the peer's own class where torch exists; prints differences to stderr."""
    try:
        sys.path.insert(0, PEER)
        from torch_gpt import Markov  # noqa: E402  (needs torch)
    except Exception as e:  # torch missing: nothing to compare with
        print(f"cross-check skipped ({type(e).__name__}: {e})", file=sys.stderr)
        return
    for vocab, mine in chains.items():
        peer = Markov(vocab)
        nprob = sum(1 for a in range(vocab) if peer.prob[a] != mine.prob[a])
        nsucc = sum(1 for a in range(vocab) if peer.succ[a] != mine.succ[a])
        print(f"vocab {vocab}: {nsucc} successor rows and {nprob} probability rows differ from the peer's "
              f"(Python {sys.version.split()[0]}); entropy {peer.entropy_rate!r} vs {mine.entropy_rate!r}",
              file=sys.stderr)
        for k, fresh, B, T in BATCHES:
            if fresh:
                peer.stream(k)
                mine.stream(k)
            x, y = peer.batch(B, T, "cpu")
            mx, my = mine.batch(B, T)
            if x.tolist() != mx or y.tolist() != my or peer.state != mine.state:
                print(f"vocab {vocab} stream {k} batch ({B}, {T}): tokens differ from the peer's", file=sys.stderr)


def ints(xs, per_line=20):
    lines = [", ".join(str(x) for x in xs[i:i + per_line]) for i in range(0, len(xs), per_line)]
    return "{" + ",\n      ".join(lines) + "}"


def doubles(xs):
    return "{" + ", ".join(x.hex() for x in xs) + "}"


def main():
    chains = {v: PeerMarkov(v) for v in VOCABS}
    out = [f"// Generated by tests/io/gen_markov_golden.py (Python {sys.version.split()[0]}) from the peer's"
           " Markov class; do not edit.",
           "// Chains: fanout 4, seed 1234. Doubles are exact (hex)."]
    out.append("inline constexpr GoldenChain kGoldenChains[] = {")
    for v, m in chains.items():
        out.append(f"    {{{v}, {m.entropy_rate.hex()}}},  // entropy rate {m.entropy_rate!r} nats")
    out.append("};")
    out.append("// {vocab, token, successors, weights (1 + 3u), probabilities, cumulative probabilities}")
    out.append("inline constexpr GoldenRow kGoldenRows[] = {")
    for v, m in chains.items():
        for a in rows_for(v):
            cum, acc = [], 0.0
            for p in m.prob[a]:
                acc += p
                cum.append(acc)
            out.append(f"    {{{v}, {a}, {ints(m.succ[a])},\n     {doubles(m.weight[a])},\n"
                       f"     {doubles(m.prob[a])},\n     {doubles(cum)}}},")
    out.append("};")
    out.append("// {vocab, stream, fresh, B, T, state after, inputs (B, T), targets (B, T)}")
    out.append("inline constexpr GoldenBatch kGoldenBatches[] = {")
    for v, m in chains.items():
        for k, fresh, B, T in BATCHES:
            if fresh:
                m.stream(k)
            x, y = m.batch(B, T)
            flat_x = [t for row in x for t in row]
            flat_y = [t for row in y for t in row]
            out.append(f"    {{{v}, {k}, {'true' if fresh else 'false'}, {B}, {T}, 0x{m.state:016x}u,\n"
                       f"     {ints(flat_x)},\n     {ints(flat_y)}}},")
    out.append("};")
    print("\n".join(out))
    cross_check(chains)


if __name__ == "__main__":
    main()
