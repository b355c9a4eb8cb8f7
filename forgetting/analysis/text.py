"""The report of `forgetting.analyze` (analyze.py `analyze_tables`) as text: each section's
lines, with every threshold it used stated."""

from __future__ import annotations

from forgetting.analysis.curvature import render_lines as curvature_lines
from forgetting.analysis.mechanism import render_lines as mechanism_lines
from forgetting.analysis.onset import render_lines as onset_lines
from forgetting.analysis.premises import render_lines as premises_lines
from forgetting.analysis.recency import PROBE_KEYS
from forgetting.analysis.seeds import render_lines as replication_lines
from forgetting.analysis.verdict import render_lines


def render(report: dict) -> str:
    """The report as a short text; every threshold it used is stated."""
    th = report["thresholds"]
    status = ", ".join(f"{v} {k}" for k, v in report["status"].items())
    lines = [f"{', '.join(report['dirs'])}: {report['runs']} runs ({status})"]
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    for entry in report.get("lr_subset", []):
        edge = entry["onset"]
        lines += ["", f"LR factor x subset, batch {entry['batch_size']}: instability from "
                      f"factor {edge:g}" if edge is not None else
                  f"LR factor x subset, batch {entry['batch_size']}: no instability in the grid",
                  f"  {'subset':>8} {'best LR factor':>32} {'test loss':>10}  onset"]
        for s in entry["subsets"]:
            best = (f"{s['best_lr']:.3g}" + ("" if s["best_lr_where"] == "interior" else
                                               f" ({s['best_lr_where']})")
                    if "best_lr" in s else "-")
            loss = f"{s['best_test_loss']:.4f}" if "best_lr" in s else "-"
            where = f"{s['onset']:g} ({s['onset_reason']})" if s["onset"] is not None else "-"
            lines.append(f"  {s['subset']:>8g} {best:>32} {loss:>10}  {where}")
        lines += render_lines(entry)
    if "lr_subset" in report:
        lines.append(
            f"  thresholds: unstable = a run diverged or the final train loss rose by "
            f"> {th['jump']:.0%} and > {th['jump_abs']:g} nats over one grid step; at the edge "
            f"= optimum within x{th['edge_gap']:g} of the onset; moves = smallest/largest "
            f"subset optimum >= x{th['shift']:g}; optimum = min mean test loss, parabola on "
            f"log2(LR)")
    if "no_verdict" in report:
        lines += ["", f"verdict: none ({report['no_verdict']})"]
    if report.get("curvature"):
        lines += curvature_lines(report["curvature"], th["edge_ratio"])
    if report.get("onset_width"):
        lines += onset_lines(report["onset_width"])
    if report.get("mechanism", {}).get("runs"):
        lines += mechanism_lines(report["mechanism"])
    if report.get("replication"):
        lines += replication_lines(report["replication"], th["edge_ratio"])
    if report.get("recipes"):
        lines += ["", "recipes:"]
        for r in report["recipes"]:
            acc = f"{r['median_test_acc']:.4f}" if r["median_test_acc"] is not None else "-"
            secs = f"{r['median_train_s']:.1f} s" if r["median_train_s"] is not None else "-"
            lines.append(f"  {r['recipe']} (batch {r['batch_size']}): {r['reached']}/{r['runs']}"
                         f" runs reached {r['target_acc']:.2%}; median test acc {acc}, "
                         f"median time per run {secs}")
    if report.get("premises"):
        lines += premises_lines(report["premises"], th["within"])
    if report.get("probe"):
        lines += ["", f"forgetting probe (loss of recently seen batches, bins of {th['bin']:g} "
                      f"epoch; 'test level' = within {th['within']:.0%} of the test loss):"]
        shown = [k for k in PROBE_KEYS
                 if k == "lr" or len({str(p.get(k)) for p in report["probe"]}) > 1]
        for p in report["probe"]:
            name = " ".join(f"{k}={p[k]:g}" if isinstance(p[k], float) else f"{k}={p[k]}"
                            for k in shown if k in p)
            reach = (f"at test level from {p['steps_to_test_level']} steps "
                     f"({p['epochs_to_test_level']:.2f} epoch) ago"
                     if p["steps_to_test_level"] is not None else
                     f"never at test level within {p['probed_epochs']:.3g} epochs")
            lines.append(f"  {name}: test loss {p['test_loss']:.4f}; most recent batches "
                         f"{p['recent_loss']:.4f}, oldest probed {p['oldest_loss']:.4f}; {reach}")
    return "\n".join(lines) + "\n"
