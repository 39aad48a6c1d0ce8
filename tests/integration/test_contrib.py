"""contrib/prometheus: the alert rules and the Grafana dashboard name only
metrics msmilter writes (test_metrics.WRITTEN, which test_metrics checks
against a file a running msmilter wrote), and parse."""

import json
import os
import re
import shutil
import subprocess

import pytest

from test_metrics import WRITTEN, family

PROJECT_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__),
                                            "..", ".."))
CONTRIB = os.path.join(PROJECT_ROOT, "contrib", "prometheus")
# Not ours, named on purpose: the node exporter's own textfile mtime.
OTHERS = {"node_textfile_mtime_seconds"}


def names_in(expr):
    """Metric families an expression names (a histogram's _bucket series
    counts as its family)."""
    return set(family(n) for n in
               re.findall(r"\b((?:msmilter|node)_[a-zA-Z0-9_:]*)", expr))


def alert_exprs():
    yaml = pytest.importorskip("yaml")
    with open(os.path.join(CONTRIB, "msmilter-alerts.yml")) as f:
        doc = yaml.safe_load(f)
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert rules
    for r in rules:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}
        assert r["alert"] and r["expr"]
    return {r["alert"]: r["expr"] for r in rules}


def dashboard_exprs():
    with open(os.path.join(CONTRIB, "msmilter-dashboard.json")) as f:
        dash = json.load(f)
    out = {}
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out["%s/%s" % (p["title"], t["refId"])] = t["expr"]
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            out["$" + v["name"]] = v["query"]
    return out


def test_written_names_are_the_sources():
    with open(os.path.join(PROJECT_ROOT, "privsep", "metrics.c")) as f:
        src = f.read()
    assert set(re.findall(r"# TYPE (msmilter_[a-z_]+)", src)) == WRITTEN


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_metric_named_is_written(source):
    exprs = alert_exprs() if source == "alerts" else dashboard_exprs()
    used = set()
    for where, expr in exprs.items():
        names = names_in(expr)
        assert names, (where, expr)
        unknown = names - WRITTEN - OTHERS
        assert not unknown, (where, unknown)
        used |= names
    # The alerts cover what the issue asks: milterin growing, the relay
    # deferring, a child restarting.
    if source == "alerts":
        text = " ".join(exprs.values())
        assert 'queue="milterin"' in text
        assert 'result="deferred"' in text
        assert "msmilter_child_restarts_total" in text
    else:
        assert used == WRITTEN, WRITTEN - used


def test_promtool_checks_the_rules():
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed (package prometheus)")
    p = subprocess.run([promtool, "check", "rules",
                        os.path.join(CONTRIB, "msmilter-alerts.yml")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.returncode == 0, p.stdout.decode()
