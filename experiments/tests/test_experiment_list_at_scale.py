"""The experiment pages stay right when they stop reading every run: counts and the best
value cover all runs, and a SQLite store keeps the statistics its sorts need."""

import re
import sqlite3

import pytest
from django.conf import settings

from experiments import services, tracking
from pipelines.templatetags.mlops_format import sig3


@pytest.fixture
def analyst(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("analyst"))
    return client


def make_runs(experiment_id: str, accuracies: list[float], parent: str = "") -> list[str]:
    """Finished runs, oldest first, each with an accuracy; nested in `parent` if given."""
    client = tracking.configure()
    ids = []
    for index, accuracy in enumerate(accuracies):
        tags = {"mlflow.parentRunId": parent} if parent else {}
        run = client.create_run(experiment_id, start_time=1_000_000 + index, tags=tags)
        client.log_metric(run.info.run_id, "accuracy", accuracy)
        client.set_terminated(run.info.run_id)
        ids.append(run.info.run_id)
    return ids


def list_row(client, name: str) -> str:
    html = client.get("/experiments/").content.decode()
    return next(row for row in re.findall(r"<tr>(.*?)</tr>", html, re.S) if name in row)


def test_list_counts_every_run_and_finds_the_best_beyond_the_newest(analyst, monkeypatch):
    monkeypatch.setattr(services, "RUNS_SAMPLED_FOR_SUMMARY", 1)
    experiment = tracking.ensure_experiment("scale")
    oldest, *_ = make_runs(experiment, [0.9, 0.5, 0.7])
    make_runs(experiment, [0.99], parent=oldest)  # a search trial: neither counted nor best
    row = list_row(analyst, "scale")
    assert '<td class="num">3</td>' in row
    assert sig3(0.9) in row and sig3(0.99) not in row


def test_list_on_a_tracking_server_counts_up_to_the_limit(analyst, monkeypatch):
    monkeypatch.setattr(tracking, "count_runs", lambda experiment_ids: None)
    monkeypatch.setattr(services, "RUNS_READ_FOR_SUMMARY", 2)
    make_runs(tracking.ensure_experiment("scale"), [0.9, 0.5, 0.7])
    row = list_row(analyst, "scale")
    assert '<td class="num">2+</td>' in row and sig3(0.9) in row


def test_sorting_by_a_metric_refreshes_the_sqlite_statistics(analyst):
    experiment = tracking.ensure_experiment("scale")
    make_runs(experiment, [0.5, 0.9, 0.7])
    html = analyst.get(f"/experiments/{experiment}/", {"sort": "metrics.accuracy", "desc": "1"})
    cells = re.findall(r'<td class="num">([^<]*)</td>', html.content.decode())
    assert cells == [sig3(0.9), sig3(0.7), sig3(0.5)]
    # Without them SQLite scans MLflow's metric subquery once per run (seconds at 5,000).
    path = settings.MLFLOW_TRACKING_URI.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        stats = db.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = 'runs'").fetchone()
    assert stats and int(stats[0].split()[0]) == 3
