"""What each private BentoML use in iris_classifier/serving/bentoml_compat.py relies on, on the installed BentoML.

When one of these fails after a BentoML upgrade, upstream changed what a workaround copies or reads: revisit
that function of bentoml_compat (and its note in the module's docstring) before anything else. The timeout
patch has its own guard in test_timeout.py; the served Bento's labels theirs in tests/registry.
"""

from __future__ import annotations

import ast
import contextvars
import inspect

import bentoml

from iris_classifier.project.paths import ROOT
from iris_classifier.serving import bentoml_compat

PRIVATE_MODULES = ("bentoml._internal", "_bentoml_sdk", "_bentoml_impl")


def test_the_installed_bentoml_is_the_one_the_workarounds_were_written_for():
    assert bentoml.__version__ == bentoml_compat.PINNED_BENTOML


def test_only_the_compat_module_imports_bentoml_internals():
    compat = ROOT / "iris_classifier" / "serving" / "bentoml_compat.py"
    folders = ("iris_classifier", "bench", "ops", "demo", "stages")
    sources = [ROOT / "service.py", *(path for folder in folders for path in (ROOT / folder).rglob("*.py"))]
    offenders = []
    for path in sources:
        if path == compat:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {name}" for name in names if name.startswith(PRIVATE_MODULES)]
    assert offenders == []


# ---- MonitorBase (public: bentoml.monitoring): the record protocol the prediction log relies on ----


def test_a_monitor_gets_its_columns_once_in_the_order_logged_then_every_record():
    """The record protocol BufferedMonitor relies on (export_schema learns the keys; export_data gets each record)."""
    schemas: list[dict] = []
    records: list[dict] = []

    class Probe(bentoml.monitoring.MonitorBase):
        def export_schema(self, columns_schema):
            schemas.append(dict(columns_schema))

        def export_data(self, datas):
            records.append({name: list(values) for name, values in datas.items()})

    with bentoml.monitor("compat_probe", monitor_class=Probe, monitor_options={}) as first:
        first.log(5.1, "sepal_length", "feature", "numerical")
        first.log("setosa", "species", "prediction", "categorical")
    with bentoml.monitor("compat_probe") as again:  # the same monitor, by name
        again.log(6.3, "sepal_length", "feature", "numerical")
        again.log("virginica", "species", "prediction", "categorical")
    assert again is first
    assert schemas == [
        {
            "sepal_length": {"name": "sepal_length", "role": "feature", "type": "numerical"},
            "species": {"name": "species", "role": "prediction", "type": "categorical"},
        }
    ]
    assert list(schemas[0]) == ["sepal_length", "species"]
    assert records == [
        {"sepal_length": [5.1], "species": ["setosa"]},
        {"sepal_length": [6.3], "species": ["virginica"]},
    ]


# ---- request_id and trace_id: BentoML's ids of the request being served ----


def test_bentoml_sets_the_request_id_from_its_server_span_and_sends_it_in_hex():
    from _bentoml_impl.server.app import ServiceAppFactory

    middlewares = inspect.getsource(ServiceAppFactory.middlewares.fget)  # its OpenTelemetry server_request_hook
    assert "trace_context.request_id = span.context.span_id" in middlewares
    headers = inspect.getsource(ServiceAppFactory._add_response_headers)
    assert 'resp.headers["X-BentoML-Request-ID"] = format(\n' in headers
    assert 'trace_context.request_id, logging_format["span_id"]' in headers


def test_request_id_is_the_context_s_in_decimal_and_fresh_outside_a_request():
    from bentoml._internal.context import trace_context

    def in_a_request() -> str:
        trace_context.request_id = 0x4D98B4C9C2678E18
        return bentoml_compat.request_id()

    assert contextvars.copy_context().run(in_a_request) == "5591417716023463448"
    outside = [bentoml_compat.request_id() for _ in range(3)]
    assert all(number.isdigit() for number in outside) and len(set(outside)) == 3
    assert isinstance(bentoml_compat.trace_id(), int)
