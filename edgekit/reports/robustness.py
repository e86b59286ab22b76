"""The report's robustness section (FGSM/PGD/CW and common corruptions), rendered from the manifest's
``robustness`` section that ``edgekit.profiling.robustness`` measures."""

from __future__ import annotations


def _eps_label(eps: float) -> str:
    n = eps * 255
    return f"{round(n)}/255" if abs(n - round(n)) < 1e-6 else f"{eps:g}"


def _l2(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def robustness_markdown(section: dict) -> str:
    """The report's robustness section, rendered from the manifest section."""
    eps = [_eps_label(e) for e in section["eps"]]
    head = ["model", "attack"] + [c for a in section["attacks"] for c in
                                  (["CW-L2"] if a == "cw" else [f"{a.upper()} ε={e}" for e in eps])]
    cw = section.get("cw")
    cw_line = (f" CW-L2 (Carlini-Wagner): unbounded L2, {cw['steps']} Adam steps × {cw['search_steps']} "
               f"binary-search rounds over c from {cw['c']:g}." if cw else "")
    lines = ["", "## Robustness", "",
             f"Top-1 (%) on the first {section['samples']} test images. ε is an L∞ budget in [0, 1] pixels; "
             f"PGD: {section['pgd_steps']} steps, random start.{cw_line} Artifact rows are *transfer* attacks: "
             "images crafted on the final PyTorch model, run through the artifact's own runtime.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in section["models"]:
        cells = [row["model"], row["attack"]] + [f"{v:.2f}" for a in section["attacks"] for v in row["attacks"][a]]
        lines.append("| " + " | ".join(cells) + " |")
    if cw:
        lines += ["", "Carlini-Wagner: success rate (% of the images a model classified correctly that the attack "
                  "made it misclassify) and the L2 distortion of those successes, in [0, 1] pixels "
                  "(√(C·H·W) is the largest possible):", "",
                  "| model | success (%) | mean L2 | median L2 |", "|---|---|---|---|"]
        for row in section["models"]:
            r = row.get("cw") or {}
            lines.append(f"| {row['model']} | {r.get('success_rate', 0):.2f} | {_l2(r.get('mean_l2'))} | "
                         f"{_l2(r.get('median_l2'))} |")
    if section["corruptions"]:
        sev = section["severities"]
        head = ["model", "clean"] + [f"{c} s{s}" for c in section["corruptions"] for s in sev]
        lines += ["", "Common corruptions (severity levels: " + "; ".join(
            f"{c} {section['severity_levels'][c]}" for c in section["corruptions"]) + "):", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in section["models"]:
            cells = [row["model"], f"{row['clean']:.2f}"] + [f"{v:.2f}" for c in section["corruptions"]
                                                              for v in row["corruptions"][c]]
            lines.append("| " + " | ".join(cells) + " |")
    for s in section.get("skipped", []):
        lines.append(f"\n- not evaluated: {s['artifact']} ({s['reason']})")
    return "\n".join(lines) + "\n"
