"""Cascade benchmark: cost-quality curve, uncertainty AUROC and budget safety.

1. Record (real stack): deploys the suite's spec and asks both tiers every item
   with the uncertainty score; a RouterBench-style outcome table (item x tier ->
   right?, uncertainty, tokens, latency). `--outcomes FILE` reuses a recording.
   Suites: `kv` (deployments/bench-policies.yaml: the trained kv-small -> kv-large,
   retrieval questions with 30-300 words of context) and `pretrained`
   (deployments/bench-pretrained.yaml: SmolLM2-135M-Instruct -> Gemma 3 270M,
   the real-text short questions of models/questions.py).
2. Curve: a cascade cheap -> strong tier escalating when the cheap tier's
   uncertainty exceeds a threshold, swept over thresholds; cost from the spec's
   tier prices and the real token counts. Baselines: each tier alone, random
   escalation at the same rate, and an oracle. Reports cost saved at 95% of the
   strong tier's accuracy, and `escalate_above` calibrated on half the items and
   checked on the held-out half.
3. Uncertainty: AUROC of the score for "the cheap tier is wrong", against each
   component alone, a logistic mix, and a random score; time per score.
4. Budgets: a seeded simulator (latent difficulty d; P(right) = sigmoid(skill - d);
   Poisson arrivals) drives the router's own planner and ledgers for tenants
   with tight to loose budgets and counts budget violations (spend > budget).
Writes bench/results/cascade[-pretrained].json, ...-outcomes.json and ....png.

    .venv/bin/python bench/cascade.py                      # ~3 min on 2 cores
    .venv/bin/python bench/cascade.py --suite pretrained   # real models
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from shardline.client import Client  # noqa: E402
from shardline.errors import ResourceExhausted  # noqa: E402
from shardline.generation import TokenLogprob  # noqa: E402
from shardline.models import questions, tasks  # noqa: E402
from shardline.policies import uncertainty  # noqa: E402
from shardline.policies.decoding.budget import Ledger  # noqa: E402
from shardline.policies.decoding.costs import Tier  # noqa: E402
from shardline.policies.decoding.plan import make_plan, should_escalate  # noqa: E402
from shardline.spec import load_spec  # noqa: E402
from shardline.spec.policies import UncertaintyMix  # noqa: E402
from stack import ROOT, deployed  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SPEC = ROOT / "deployments" / "bench-policies.yaml"
LENGTHS = (30, 60, 100, 150, 200, 300)
COMPONENTS = ("mean_nll", "low_quantile_prob", "min_margin", "min_window_prob")


@dataclass(frozen=True)
class Suite:
    """What one run measures: a spec, its cascade's tiers (cheap first, as the spec
    prices them) and the checkable items both are asked."""

    spec: Path
    small: str
    large: str
    items: Callable[[int, int], list[tuple[str, object]]]
    """(items per group, seed) -> (group, item) pairs."""
    score: Callable[[object, str], bool]
    max_tokens: int
    stop: tuple[str, ...] = ()
    results: str = "cascade"


def _kv_items(per_length: int, seed: int) -> list[tuple[str, object]]:
    return [
        (str(length), item) for length in LENGTHS for item in tasks.items_for_length(seed + length, per_length, length)
    ]


def _real_items(per_kind: int, seed: int) -> list[tuple[str, object]]:
    # short_answers cycles capital, arithmetic, extraction: 3 x per_kind items.
    return [(item.kind, item) for item in questions.short_answers(seed, 3 * per_kind)]


SUITES = {
    "kv": Suite(SPEC, "kv-small", "kv-large", _kv_items, tasks.score, max_tokens=8),
    "pretrained": Suite(
        ROOT / "deployments" / "bench-pretrained.yaml",
        "smollm2-135m-instruct",
        "gemma-3-270m",
        _real_items,
        questions.score,
        max_tokens=12,
        stop=("\n",),
        results="cascade-pretrained",
    ),
}
SUITES["pretrained-raw"] = replace(
    SUITES["pretrained"], spec=ROOT / "deployments" / "bench-pretrained-raw.yaml", results="cascade-pretrained-raw"
)
"""The same, the engines returning raw logits: spilled energy joins the score."""


def record(suite: Suite, items_per_group: int, seed: int) -> list[dict]:
    rows = []
    with deployed(suite.spec) as target, Client(target) as client:
        for i, (group, item) in enumerate(suite.items(items_per_group, seed)):
            row = {"group": group, "item": i}
            for tier in (suite.small, suite.large):
                row[tier] = ask(client, suite, tier, item)
            rows.append(row)
    return rows


def ask(client: Client, suite: Suite, tier: str, item) -> dict:
    start = time.perf_counter()
    reply = client.generate(
        tier,
        item.prompt,
        timeout=120,
        max_tokens=suite.max_tokens,
        stop=suite.stop,
        temperature=0.0,
        uncertainty=True,
    )
    return {
        "right": suite.score(item, reply.text),
        "u": reply.report.uncertainty.score,
        **reply.report.uncertainty.components,  # max_spill too when the engine returns raw logits
        "prompt_tokens": reply.usage.prompt_tokens,
        "completion_tokens": reply.usage.completion_tokens,
        "latency_s": time.perf_counter() - start,
    }


def prices(suite: Suite) -> dict[str, Tier]:
    """The two tiers by role ("small" answers first, "large" on escalation)."""
    spec = load_spec(suite.spec)
    by_name = {m.name: Tier(m.name, m.cost.input_per_1k, m.cost.output_per_1k) for m in spec.models}
    return {"small": by_name[suite.small], "large": by_name[suite.large]}


def by_role(rows: list[dict], suite: Suite) -> list[dict]:
    """Outcome rows keyed by role; recordings keep the tiers' own names."""
    return [{**r, "small": r[suite.small], "large": r[suite.large]} for r in rows]


def cost(tier: Tier, outcome: dict) -> float:
    return tier.cost(outcome["prompt_tokens"], outcome["completion_tokens"])


def curve(rows: list[dict], tiers: dict[str, Tier]) -> dict:
    small, large = tiers["small"], tiers["large"]
    c_small = [cost(small, r["small"]) for r in rows]
    c_large = [cost(large, r["large"]) for r in rows]
    points = sweep(rows, c_small, c_large)
    q_large, cost_large = statistics.mean(r["large"]["right"] for r in rows), statistics.mean(c_large)
    q_small, cost_small = statistics.mean(r["small"]["right"] for r in rows), statistics.mean(c_small)
    fits = [p for p in points if p["quality"] >= 0.95 * q_large]
    best = min(fits, key=lambda p: p["cost"]) if fits else None
    return {
        "points": points,
        "all_small": {"quality": q_small, "cost": cost_small},
        "all_large": {"quality": q_large, "cost": cost_large},
        "oracle": oracle(rows, c_small, c_large),
        "at_95pct_of_large": best,
        "cost_saved_at_95pct": 1 - best["cost"] / cost_large if best else None,
        "random_at_same_rate": random_baseline(best, q_small, q_large, cost_small, cost_large) if best else None,
    }


def sweep(rows: list[dict], c_small: list[float], c_large: list[float]) -> list[dict]:
    """The cascade at every threshold: escalate the answers whose score exceeds it."""
    import numpy as np

    u = np.array([r["small"]["u"] for r in rows])
    right_small = np.array([r["small"]["right"] for r in rows], dtype=float)
    right_large = np.array([r["large"]["right"] for r in rows], dtype=float)
    points = []
    for theta in sorted({-1.0, 1.0, *u.tolist()}):
        up = u > theta
        points.append(
            {
                "threshold": theta,
                "escalation_rate": float(up.mean()),
                "quality": float(np.where(up, right_large, right_small).mean()),
                "cost": float((np.array(c_small) + up * np.array(c_large)).mean()),
            }
        )
    return points


def oracle(rows, c_small, c_large) -> dict:
    up = [not r["small"]["right"] and r["large"]["right"] for r in rows]
    quality = statistics.mean(r["large" if e else "small"]["right"] for r, e in zip(rows, up))
    return {
        "quality": quality,
        "cost": statistics.mean(cs + (cl if e else 0) for cs, cl, e in zip(c_small, c_large, up)),
    }


def random_baseline(best, q_small, q_large, cost_small, cost_large) -> dict:
    f = best["escalation_rate"]
    # Escalating a random share f: the cheap tier's answers stand on the rest.
    return {"escalation_rate": f, "quality": (1 - f) * q_small + f * q_large, "cost": cost_small + f * cost_large}


def auroc(scores: list[float], positives: list[bool]) -> float:
    """P(score of a random positive > score of a random negative), ties half."""
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    if not pos or not neg:
        return float("nan")
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def uncertainty_quality(rows: list[dict], seed: int, role: str = "small") -> dict:
    """How well the score ranks `role`'s wrong answers above its right ones: the
    router's score, each component alone, and a logistic mix of them (5-fold: fit on
    4/5, scored on the held-out 1/5)."""
    wrong = [not r[role]["right"] for r in rows]
    rng = random.Random(seed)
    found = components(rows, role)
    # Signs: a higher probability or margin means *less* uncertain.
    signs = {"mean_nll": 1, "low_quantile_prob": -1, "min_margin": -1, "min_window_prob": -1, "max_spill": 1}
    return {
        "wrong_rate": statistics.mean(wrong),
        "auroc_score": auroc([r[role]["u"] for r in rows], wrong),
        **{f"auroc_{c}": auroc([signs[c] * r[role][c] for r in rows], wrong) for c in found},
        "auroc_logistic_mix_5fold": logistic_cv_auroc(rows, wrong, seed, role, found),
        "auroc_random": auroc([rng.random() for _ in rows], wrong),
        "score_time_us": score_time_us(),
    }


def components(rows: list[dict], role: str) -> tuple[str, ...]:
    """The components every recorded answer of `role` has (max_spill: raw-logits engines)."""
    return tuple(c for c in (*COMPONENTS, "max_spill") if all(c in r[role] for r in rows))


def logistic_cv_auroc(rows: list[dict], wrong: list[bool], seed: int, role: str, names, folds: int = 5) -> float:
    """AUROC of a logistic mix of the components fit on 4/5 and scored on the held-out 1/5."""
    import numpy as np

    x, _, _ = _standardised(rows, role, names)
    y = np.array(wrong, dtype=float)
    order = np.random.default_rng(seed).permutation(len(rows))
    scores = np.zeros(len(rows))
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        w = _fit_logistic(x[train], y[train])
        scores[test] = x[test] @ w[:-1] + w[-1]
    return auroc(scores.tolist(), wrong)


def fitted_mix(rows: list[dict], role: str, quality: dict) -> dict:
    """A spec `uncertainty` mix for `role`'s model, fitted on every item, and whether it
    earns its place: its held-out (5-fold) AUROC beats the plain score and mean NLL."""
    import numpy as np

    names = components(rows, role)
    x, mean, std = _standardised(rows, role, names)
    w = _fit_logistic(x, np.array([not r[role]["right"] for r in rows], dtype=float))
    rivals = max(quality["auroc_score"], quality["auroc_mean_nll"])
    return {
        "wins_held_out": bool(quality["auroc_logistic_mix_5fold"] > rivals),
        "spec": {
            "weights": {c: round(float(v), 4) for c, v in zip(names, w[:-1])},
            "mean": {c: round(float(v), 6) for c, v in zip(names, mean)},
            "std": {c: round(float(v), 6) for c, v in zip(names, std)},
            "bias": round(float(w[-1]), 4),
        },
    }


def rescored(rows: list[dict], mix: dict) -> list[dict]:
    """The rows with the cheap tier's score recomputed as the router would with `mix`."""
    spec = UncertaintyMix(**mix)
    return [{**r, "small": {**r["small"], "u": uncertainty.mixed(spec, r["small"])}} for r in rows]


def _standardised(rows: list[dict], role: str, names):
    import numpy as np

    x = np.array([[r[role][c] for c in names] for r in rows])
    mean, std = x.mean(0), x.std(0) + 1e-9
    return (x - mean) / std, mean, std


def _fit_logistic(x, y, steps: int = 2000, lr: float = 0.1):
    import numpy as np

    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(xb @ w)))
        w -= lr * (xb.T @ (p - y) / len(y) + 1e-3 * w)
    return w


def score_time_us(steps: int = 8, calls: int = 20_000) -> dict:
    rng = random.Random(0)
    out = {}
    for n in (steps, 256):
        tokens = [TokenLogprob(-rng.random(), (-rng.random() * 0.1, -1 - rng.random())) for _ in range(n)]
        start = time.perf_counter()
        for _ in range(calls // (n // steps)):
            uncertainty.score(tokens)
        out[f"{n}_tokens"] = round((time.perf_counter() - start) / (calls // (n // steps)) * 1e6, 1)
    return out


def simulated_outcomes(
    rows: list[dict], seed: int, n: int = 5000, weak: float = 0.7, strong: float = 0.85, target_auroc: float = 0.75
) -> list[dict]:
    """RouterBench-style table from latent difficulty: P(right | tier) = sigmoid(logit(skill) - d).

    Token counts are drawn from the recorded rows (so the real tiers' prices apply).
    The cheap tier's uncertainty separates its wrong answers from its right ones with
    the given AUROC (binormal: wrong ~ N(gap, 1), right ~ N(0, 1), AUROC = Phi(gap / sqrt 2)),
    so the measured AUROC of the real score carries over."""
    rng = random.Random(seed)
    gap = math.sqrt(2) * statistics.NormalDist().inv_cdf(target_auroc)
    out = []
    for _ in range(n):
        d, row = rng.gauss(0, 1), rng.choice(rows)
        small_right = rng.random() < _sigmoid(_logit(weak) - d)
        u = _sigmoid((0.0 if small_right else gap) + rng.gauss(0, 1))
        out.append(
            {
                "small": {**row["small"], "right": small_right, "u": u},
                "large": {**row["large"], "right": rng.random() < _sigmoid(_logit(strong) - d)},
            }
        )
    return out


def savings_grid(rows: list[dict], tiers: dict[str, Tier], seed: int, measured: float) -> list[dict]:
    """Cost saved at 95% of the strong tier's quality, by weak-tier skill and uncertainty AUROC."""
    grid = []
    for weak in (0.6, 0.7, 0.8):
        for target in (measured, 0.85, 0.95):
            c = curve(simulated_outcomes(rows, seed, n=3000, weak=weak, strong=0.85, target_auroc=target), tiers)
            grid.append(
                {
                    "weak_skill": weak,
                    "uncertainty_auroc": round(target, 3),
                    "weak_quality": round(c["all_small"]["quality"], 3),
                    "strong_quality": round(c["all_large"]["quality"], 3),
                    "cost_saved_at_95pct": c["cost_saved_at_95pct"],
                }
            )
    return grid


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def simulate_budgets(tiers: dict[str, Tier], rows: list[dict], seed: int, requests: int = 4000) -> list[dict]:
    """Tenants of several budgets replayed through make_plan + Ledger; counts violations."""
    rng = random.Random(seed)
    prompts = [r["small"]["prompt_tokens"] for r in rows]
    cascade = [tiers["small"], tiers["large"]]
    typical = statistics.mean(t.cost(statistics.mean(prompts), 8) for t in cascade)
    out = []
    for share in (0.05, 0.25, 0.5, 1.0, 2.0):
        out.append(run_tenant(rng, cascade, prompts, budget=share * typical * requests, requests=requests, share=share))
    return out


def run_tenant(rng, cascade, prompts, budget, requests, share) -> dict:
    window = 3600.0
    ledger = Ledger("sim", budget, window)
    violations, rejected, escalated, right = 0, 0, 0, 0
    # Poisson arrivals conditioned on their count: sorted uniform times in one window.
    for now in sorted(rng.uniform(0, window * 0.999) for _ in range(requests)):
        d, prompt = rng.gauss(0, 1.5), rng.choice(prompts)
        try:
            plan = make_plan(cascade, prompt + 2, 8, ledger.remaining(now), 0.35, ledger.pace(now), "sim")
        except ResourceExhausted:
            rejected += 1
            continue
        reservation = ledger.reserve(plan.reserve, now)
        spent, ok = 0.0, False
        for i, tier in enumerate(plan.tiers):
            produced = rng.randint(1, plan.max_tokens)
            spent += tier.cost(prompt + 1, produced)  # the engine adds BOS
            ok = rng.random() < 1 / (1 + math.exp(-((0.0 if i == 0 else 1.5) - d)))
            u = 1 / (1 + math.exp(-(d - 0.5 + rng.gauss(0, 0.7))))
            if not should_escalate(plan, i, u):
                break
            escalated += 1
        ledger.settle(reservation, spent)
        right += ok
        violations += ledger.spent > budget + 1e-9
    return {
        "budget_share_of_typical": share,
        "budget": budget,
        "spent": ledger.spent,
        "requests": requests,
        "rejected": rejected,
        "escalated": escalated,
        "quality": right / requests,
        "violations": violations,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in zip(axes, ("curve", "simulated_curve"), ("real tiers", "simulator (latent difficulty)")):
        _plot_curve(ax, result[key], title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _plot_curve(ax, c: dict, title: str) -> None:
    ax.plot(
        [p["cost"] for p in c["points"]],
        [p["quality"] for p in c["points"]],
        marker=".",
        label="cascade (threshold sweep)",
    )
    for name in ("all_small", "all_large", "oracle"):
        ax.scatter([c[name]["cost"]], [c[name]["quality"]], label=name, zorder=3)
    if c["random_at_same_rate"]:
        r = c["random_at_same_rate"]
        ax.scatter([r["cost"]], [r["quality"]], label="random escalation", marker="x", zorder=3)
    ax.axhline(0.95 * c["all_large"]["quality"], ls="--", lw=0.8, color="gray", label="95% of the strong tier")
    ax.set(xlabel="mean cost per request (credits)", ylabel="accuracy", title=f"cheap -> strong tier: {title}")
    ax.legend(fontsize=7)


def calibrate(rows: list[dict], tiers: dict[str, Tier], seed: int, mixed: bool = False) -> dict:
    """`escalate_above` fitted on half the items (the cheapest threshold that keeps 95%
    of the strong tier's accuracy there), then checked on the other, held-out half.
    `mixed`: the cheap tier's score is a mix (fitted_mix) fitted on that same half."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    fit, held = [rows[i] for i in order[::2]], [rows[i] for i in order[1::2]]
    mix = None
    if mixed:
        mix = fitted_mix(fit, "small", uncertainty_quality(fit, seed))["spec"]
        fit, held = rescored(fit, mix), rescored(held, mix)
    chosen = curve(fit, tiers)["at_95pct_of_large"]
    if chosen is None:
        return {"escalate_above": None, "fit_items": len(fit), "held_out_items": len(held)}
    theta = chosen["threshold"]
    check = curve(held, tiers)
    strong = check["all_large"]["quality"]
    point = max((p for p in check["points"] if p["threshold"] <= theta), key=lambda p: p["threshold"])
    return {
        "escalate_above": theta,
        "uncertainty": mix,
        "fit_items": len(fit),
        "held_out_items": len(held),
        "held_out": point,
        "held_out_strong_quality": strong,
        "held_out_quality_ratio": point["quality"] / strong if strong else None,
        "held_out_cost_saved": 1 - point["cost"] / check["all_large"]["cost"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="kv", help="the trained tiers or the real models")
    parser.add_argument("--items", type=int, default=40, help="items per group (context length, or question kind)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--outcomes", type=Path, help="reuse a recorded outcome table instead of the stack")
    parser.add_argument("--groups", nargs="+", help="analyse only these groups (e.g. capital): where tiers differ")
    args = parser.parse_args()
    suite = SUITES[args.suite]
    RESULTS.mkdir(exist_ok=True)
    if args.outcomes:
        rows = json.loads(args.outcomes.read_text())
    else:
        rows = record(suite, args.items, args.seed)
        (RESULTS / f"{suite.results}-outcomes.json").write_text(json.dumps(rows))
    rows = [r for r in by_role(rows, suite) if not args.groups or r["group"] in args.groups]
    tiers = prices(suite)
    quality = uncertainty_quality(rows, args.seed)
    by_model = {suite.small: quality, suite.large: uncertainty_quality(rows, args.seed, "large")}
    simulated = simulated_outcomes(rows, args.seed, target_auroc=quality["auroc_score"])
    result = {
        "suite": args.suite,
        "tiers": {"small": suite.small, "large": suite.large},
        "items": len(rows),
        "accuracy_by_group": accuracy_by_group(rows, suite),
        "curve": curve(rows, tiers),
        "calibration": calibrate(rows, tiers, args.seed),
        "calibration_with_mix": calibrate(rows, tiers, args.seed, mixed=True),
        "uncertainty": quality,
        "uncertainty_by_model": by_model,
        "uncertainty_mix": {
            tier: fitted_mix(rows, role, by_model[tier])
            for tier, role in ((suite.small, "small"), (suite.large, "large"))
        },
        "simulated_curve": {"uncertainty_auroc": quality["auroc_score"], **curve(simulated, tiers)},
        "simulated_savings_grid": savings_grid(rows, tiers, args.seed, quality["auroc_score"]),
        "latency_s": {t: statistics.median(r[t]["latency_s"] for r in rows) for t in (suite.small, suite.large)},
        "budgets": simulate_budgets(tiers, rows, args.seed),
    }
    report(result)
    name = suite.results + "".join(f"-{g}" for g in args.groups or ())
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    plot(result, RESULTS / f"{name}.png")


def accuracy_by_group(rows: list[dict], suite: Suite) -> dict:
    groups = sorted({r["group"] for r in rows if "group" in r})
    return {
        g: {t: statistics.mean(r[t]["right"] for r in rows if r["group"] == g) for t in (suite.small, suite.large)}
        for g in groups
    }


def report(result: dict) -> None:
    print(f"-- tiers {result['tiers']['small']} -> {result['tiers']['large']}; accuracy by group:")
    for group, acc in result["accuracy_by_group"].items():
        print(f"  {group:<12} " + "  ".join(f"{t} {a:.3f}" for t, a in acc.items()))
    for key, score in (("calibration", "plain score"), ("calibration_with_mix", "fitted mix")):
        cal = result[key]
        if cal["escalate_above"] is not None:
            print(
                f"calibrated escalate_above ({score}) {cal['escalate_above']:.3f} on {cal['fit_items']} items; "
                f"held out ({cal['held_out_items']}): accuracy {cal['held_out']['quality']:.3f} "
                f"({cal['held_out_quality_ratio']:.1%} of the strong tier), cost saved {cal['held_out_cost_saved']:.1%}"
            )
    for title, key in (("real tiers", "curve"), ("simulator", "simulated_curve")):
        print(f"-- cascade, {title}")
        report_curve(result[key])
    u = result["uncertainty"]
    print(
        f"AUROC(cheap tier wrong): score {u['auroc_score']:.3f}  logistic mix (5-fold) "
        f"{u['auroc_logistic_mix_5fold']:.3f}  random {u['auroc_random']:.3f}  (wrong rate {u['wrong_rate']:.2f})"
    )
    for tier, q in result["uncertainty_by_model"].items():
        mix = result["uncertainty_mix"][tier]
        print(
            f"  {tier} wrong {q['wrong_rate']:.2f}: score {q['auroc_score']:.3f}  mix (5-fold) "
            f"{q['auroc_logistic_mix_5fold']:.3f}  "
            + "  ".join(
                f"{k[6:]} {v:.3f}" for k, v in q.items() if k.startswith("auroc_") and k[6:] in mix["spec"]["weights"]
            )
        )
        if mix["wins_held_out"]:
            print(f"    spec for {tier}: uncertainty: {json.dumps(mix['spec'])}")
    print(f"  score time: {u['score_time_us']} us")
    print(f"median latency s: {result['latency_s']}")
    for g in result["simulated_savings_grid"]:
        saved = "n/a" if g["cost_saved_at_95pct"] is None else f"{g['cost_saved_at_95pct']:.1%}"
        print(
            f"simulator weak {g['weak_quality']:.2f} strong {g['strong_quality']:.2f} "
            f"AUROC {g['uncertainty_auroc']:.2f}: saved {saved}"
        )
    for b in result["budgets"]:
        print(
            f"budget x{b['budget_share_of_typical']:<5} spent/budget {b['spent'] / b['budget']:.3f} rejected "
            f"{b['rejected']} escalated {b['escalated']} quality {b['quality']:.3f} violations {b['violations']}"
        )


def report_curve(c: dict) -> None:
    for name in ("all_small", "all_large", "oracle"):
        print(f"{name:<12} quality {c[name]['quality']:.3f}  cost {c[name]['cost']:.6f}")
    best = c["at_95pct_of_large"]
    if best:
        print(
            f"cascade @95% threshold {best['threshold']:.3f} escalation {best['escalation_rate']:.2f} "
            f"quality {best['quality']:.3f} cost {best['cost']:.6f} saved {c['cost_saved_at_95pct']:.1%}"
        )
        r = c["random_at_same_rate"]
        print(f"random escalation at that rate: quality {r['quality']:.3f} cost {r['cost']:.6f}")


if __name__ == "__main__":
    main()
