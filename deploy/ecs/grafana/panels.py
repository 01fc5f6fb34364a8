"""The pieces build.py makes the dashboard of: queries, panels, variables, the layout (Grafana's
JSON model, schema 39)."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

PROM = {"type": "prometheus", "uid": "${prometheus}"}
CW = {"type": "cloudwatch", "uid": "${cloudwatch}"}
# Every worker series carries the labels the ADOT sidecar adds (deploy/ecs/adot/collector.yaml).
SEL = 'cluster="$cluster", service="$service"'
RATE = "$__rate_interval"
_HIDDEN = {"legend": True, "tooltip": True, "viz": True}


def prom(expr: str, legend: str = "", *, instant: bool = False, fmt: str = "time_series") -> Json:
    return {
        "datasource": PROM,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "format": fmt,
    }


def per_second(metric: str, legend: str, by: str = "", *, extra: str = "") -> Json:
    """The fleet's rate of a counter, summed (by a label, if given)."""
    grouping = f" by ({by})" if by else ""
    return prom(f"sum{grouping} (rate({metric}{{{SEL}{extra}}}[{RATE}]))", legend)


def increase(metric: str, legend: str, by: str = "") -> Json:
    """How much a counter grew in each step: events as bars."""
    grouping = f" by ({by})" if by else ""
    return prom(f"sum{grouping} (increase({metric}{{{SEL}}}[{RATE}]))", legend)


def fleet(metric: str, legend: str) -> Json:
    return prom(f"sum({metric}{{{SEL}}})", legend)


def per_task(metric: str, legend: str) -> Json:
    return prom(f"max by (task_id) ({metric}{{{SEL}}})", f"{legend}{{{{task_id}}}}")


def cw_metric(ref: str, namespace: str, metric: str, dims: dict[str, str], stat: str) -> Json:
    """A CloudWatch metric, named ``ref`` for the metric math beside it."""
    return {
        "datasource": CW,
        "id": ref,
        "label": ref,
        "region": "$region",
        "queryMode": "Metrics",
        "metricQueryType": 0,  # metric search
        "metricEditorMode": 0,  # builder
        "namespace": namespace,
        "metricName": metric,
        "dimensions": dims,
        "statistic": stat,
        "period": "",
        "matchExact": True,
        "expression": "",
    }


def cw_math(ref: str, expression: str, label: str) -> Json:
    return {
        "datasource": CW,
        "id": ref,
        "label": label,
        "region": "$region",
        "queryMode": "Metrics",
        "metricQueryType": 0,
        "metricEditorMode": 1,  # code: metric math over the other queries' ids
        "expression": expression,
        "period": "",
        "matchExact": True,
    }


def sqs(ref: str, metric: str, queue: str = "$queue") -> Json:
    return cw_metric(ref, "AWS/SQS", metric, {"QueueName": queue}, "Maximum")


def tasks(ref: str, metric: str) -> Json:
    dims = {"ClusterName": "$cluster", "ServiceName": "$service"}
    return cw_metric(ref, "ECS/ContainerInsights", metric, dims, "Average")


def timeseries(
    title: str,
    description: str,
    targets: list[Json],
    *,
    unit: str = "short",
    stack: bool = False,
    bars: bool = False,
    hidden: tuple[str, ...] = (),
    right: tuple[str, ...] = (),
) -> Json:
    custom: Json = {"drawStyle": "bars" if bars else "line", "fillOpacity": 10}
    if stack:
        custom |= {"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 60}
    overrides = [_override(name, "custom.hideFrom", _HIDDEN) for name in hidden]
    overrides += [_override(name, "custom.axisPlacement", "right") for name in right]
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": targets[0]["datasource"],
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit, "custom": custom}, "overrides": overrides},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def _override(name: str, prop: str, value: Any) -> Json:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": prop, "value": value}],
    }


def heatmap(title: str, description: str, expr: str, *, repeat: str) -> Json:
    """Buckets as Prometheus has them (no recalculation), one panel per value of ``repeat``."""
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": PROM,
        "repeat": repeat,
        "repeatDirection": "h",
        "maxPerRow": 3,
        "targets": [prom(expr, "{{le}}", fmt="heatmap")],
        "options": {
            "calculate": False,
            "yAxis": {"unit": "s", "axisPlacement": "left"},
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5},
            "cellGap": 1,
            "filterValues": {"le": 1e-9},
            "tooltip": {"mode": "single", "yHistogram": True, "showColorScale": True},
            "legend": {"show": True},
        },
        "fieldConfig": {"defaults": {}, "overrides": []},
    }


def table(title: str, description: str, target: Json) -> Json:
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": PROM,
        "targets": [target],
        "transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
        "options": {"showHeader": True, "cellHeight": "sm"},
        "fieldConfig": {"defaults": {}, "overrides": []},
    }


def source(name: str, kind: str, label: str) -> Json:
    return {"type": "datasource", "name": name, "label": label, "query": kind, "hide": 0}


def textbox(name: str, label: str, value: str) -> Json:
    current = {"text": value, "value": value}
    return {
        "type": "textbox",
        "name": name,
        "label": label,
        "query": value,
        "current": current,
        "options": [current | {"selected": True}],
        "hide": 0,
    }


def label_values(name: str, label: str, query: str) -> Json:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": PROM,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,  # on a change of the time range
        "includeAll": True,
        "multi": True,
        "current": {"text": "All", "value": "$__all"},
        "sort": 1,
        "hide": 0,
    }


def layout(rows: list[tuple[str, list[Json]]]) -> list[Json]:
    """Rows of panels two to a line; a repeated panel gets a line of its own to fill."""
    placed: list[Json] = []
    y = 0
    for title, panels in rows:
        row = {"type": "row", "title": title, "collapsed": False, "panels": []}
        placed.append(row | {"gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        y += 1
        x = 0
        for panel in panels:
            repeated = "repeat" in panel
            width = 8 if repeated else 12
            if x + width > 24 or (x and repeated):
                x, y = 0, y + 8
            placed.append(panel | {"gridPos": {"h": 8, "w": width, "x": x, "y": y}})
            x += 24 if repeated else width
        y += 8
    for number, panel in enumerate(placed, start=1):
        panel["id"] = number
        for index, target in enumerate(panel.get("targets", [])):
            target["refId"] = chr(ord("A") + index)
    return placed
