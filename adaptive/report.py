"""An HTML report of a study: Pareto-front plots (Optuna's plotly visualisations) and a table."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import optuna

from adaptive.study import Caps, feasible_front, leakage_figures, metric_names, study_config
from adaptive.trials import is_measured, objectives_of
from objectives.trial import TrialSettings
from operators.atomic import directory_atomic

MEASURE_NAMES = {"bound": "informed-adversary bound", "attacks": "best attack run (a lower bound)"}
OBJECTIVE_NAMES = {
    "sensitive": "the worse of rare tokens and planted secrets",
    "all": "every private token",
}
PAIRS = [(0, 2), (0, 1), (2, 1)]  # accuracy-leakage, accuracy-cost, leakage-cost
HEIGHT_2D, HEIGHT_3D = 520, 760  # the 3-D scene needs room below its axes


def _visible_scale(name: str) -> list[list[Any]]:
    """Plotly's sequential scale ``name`` without its palest third: Optuna colours points by trial
    number, and on the full scale the first trials are drawn nearly white on a white page."""
    import plotly.colors

    colours = getattr(plotly.colors.sequential, name)[3:]
    return [[i / (len(colours) - 1), colour] for i, colour in enumerate(colours)]


def _legible(figure: Any, height: int) -> Any:
    for trace in figure.data:
        scale = getattr(trace.marker, "colorscale", None)
        if scale:  # plotly expands a named scale; map it back by its last (darkest) colour
            import plotly.colors

            darkest = scale[-1][1]
            for name in ("Blues", "Reds", "Greys", "Greens"):
                if getattr(plotly.colors.sequential, name)[-1] == darkest:
                    trace.marker.colorscale = _visible_scale(name)
    figure.update_layout(height=height, margin={"l": 40, "r": 40, "t": 60, "b": 60})
    return figure


def _figures(study: optuna.Study, names: list[str]) -> list[str]:
    from optuna.visualization import plot_pareto_front

    figures = [plot_pareto_front(study, target_names=names)]
    for a, b in PAIRS:
        figures.append(
            plot_pareto_front(
                study,
                targets=lambda t, a=a, b=b: (t.values[a], t.values[b]),
                target_names=[names[a], names[b]],
            )
        )
    html_parts = []
    for index, figure in enumerate(figures):
        _legible(figure, HEIGHT_3D if index == 0 else HEIGHT_2D)
        html_parts.append(
            figure.to_html(full_html=False, include_plotlyjs=index == 0)
        )  # plotly.js inline once
    return html_parts


def _table(study: optuna.Study, caps: Caps) -> str:
    rows = []
    for trial in feasible_front(study, caps):
        accuracy, cost, _ = objectives_of(trial)
        figures = leakage_figures(trial)
        attrs = trial.user_attrs
        settings = TrialSettings.from_dict(attrs["settings"])
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(cell))}</td>"
                for cell in (
                    trial.number,
                    f"{accuracy:.4f}",
                    f"{attrs.get('accuracy_gap', 0):+.4f}",
                    _share(figures.rare),
                    _share(figures.canary),
                    _share(figures.unchanged),
                    "not measured" if figures.bound is None else f"{figures.bound:.4f}",
                    figures.strongest_bound,
                    f"{figures.attacks:.4f}",
                    figures.strongest_attack,
                    f"{cost:,.0f}",
                    settings.shaking.describe(),
                    settings.describe_budget(),
                )
            )
            + "</tr>"
        )
    header = "".join(
        f"<th>{h}</th>"
        for h in (
            "trial",
            "accuracy",
            "gap",
            "bound on rare tokens",
            "planted secrets",
            "uploaded unchanged",
            "leakage bound (all tokens)",
            "set by",
            "best attack run",
            "attack",
            "GFLOP",
            "shaking",
            "tuning",
        )
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _share(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.4f}"


def write_report(study: optuna.Study, out: str | Path) -> Path:
    """Write ``out/index.html`` (a new or empty directory) and return its path."""
    config = study_config(study)
    trials = study.get_trials(deepcopy=False)
    measured = [t for t in trials if is_measured(t)]
    stopped = [t for t in trials if t.user_attrs.get("stopped_early")]
    caps = ", ".join(f"{k} {v}" for k, v in config.caps.to_dict().items() if v is not None) or "none"
    summary = (
        f"<p>model <code>{html.escape(config.model)}</code>; task {html.escape(config.task.describe())}; "
        f"fidelity {html.escape(str(config.fidelity.to_dict()))}</p>"
        f"<p>{len(trials)} trials: {len(measured)} measured, {len(stopped)} stopped early by a cap; "
        f"caps: {html.escape(caps)}; leakage objective and caps: {MEASURE_NAMES[config.leakage_measure]} "
        f"on {OBJECTIVE_NAMES[config.leakage_objective]}</p>"
        "<p>leakage bound: share of private token occurrences recovered by an attacker who knows the "
        "key's invertible operators (tilt, inflate, addv) and every public part of the key (substitution's "
        "candidate groups and epsilon); best attack run: the attack suite on the upload as it is, a lower "
        "bound. Both are measured by attacks; neither is a guarantee. Rare tokens: those outside the "
        "1,000 most frequent public tokens; planted secrets: names, numbers, e-mail addresses and dates "
        "planted in the attacked copy of the upload; uploaded unchanged: the share of private tokens "
        "that reach the cloud as written (readable once the permutation falls).</p>"
    )
    body = [f"<h1>shaketune study {html.escape(study.study_name)}</h1>", summary]
    body.append("<h2>Feasible Pareto front</h2>")
    body.append(_table(study, config.caps) if measured else "<p>no measured trials yet</p>")
    if measured:
        body.append("<h2>Pareto front plots</h2>")
        body.extend(_figures(study, metric_names(config.leakage_measure, config.leakage_objective)))
    style = (
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}</style>"
    )
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(study.study_name)}</title>"
    page += f"{style}</head><body>{''.join(body)}</body></html>"
    out = Path(out)
    with directory_atomic(out) as tmp:
        (tmp / "index.html").write_text(page, encoding="utf-8")
    return out / "index.html"
