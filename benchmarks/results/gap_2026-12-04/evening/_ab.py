"""What the A/B scripts here share: interleaved rounds of calls (A and B alternating call by call, so both see the
same state of a shared host), each round's median per callable in ms, and each round's ratio to the first."""
import statistics
import time


def rounds(fns, n_rounds=5, calls=150, names=None):
    """Print and return the per-round ratios ``fn_i / fn_0`` (one list per fn after the first)."""
    names = names or [f"#{i}" for i in range(len(fns))]
    ratios = [[] for _ in fns[1:]]
    for r in range(n_rounds):
        t = [[] for _ in fns]
        for k in range(calls):
            for j in range(len(fns)):
                i = (j + k) % len(fns)
                a = time.perf_counter()
                fns[i]()
                t[i].append(time.perf_counter() - a)
        med = [statistics.median(v) * 1e3 for v in t]
        for acc, m in zip(ratios, med[1:]):
            acc.append(m / med[0])
        print(f"round {r}: " + "  ".join(f"{n} {m:.3f} ms" for n, m in zip(names, med))
              + "  ratios " + " ".join(f"{m / med[0]:.3f}" for m in med[1:]), flush=True)
    for n, acc in zip(names[1:], ratios):
        print(f"{n} / {names[0]}: median {statistics.median(acc):.3f} (range {min(acc):.3f}-{max(acc):.3f})")
    return ratios
