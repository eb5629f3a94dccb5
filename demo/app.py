"""The Gradio demo: a client of the classifier's HTTP API, standalone or mounted by the service at /ui.

After a prediction, a person who knows the flower can say whether it was right: the label goes to the
service's POST /feedback with the prediction's request id (the feedback loop's ground truth). A CSV file
of flowers is scored through POST /classify_batch (demo/flower_file.py).
Only Gradio's public API: `gr.Blocks`, its components and events, `launch` and `gr.mount_gradio_app`.
"""

import argparse
import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import requests

from demo import flower_file
from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURE_LABELS, FEATURES, MAX_BATCH_FLOWERS, SPECIES
from iris_classifier.model.store import ModelCard, ModelNotFoundError

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_API_URL = "http://127.0.0.1:3000"
API_URL_ENV = "IRIS_API_URL"
TIMEOUT_S = 5.0
BATCH_TIMEOUT_S = 30.0  # one /classify_batch chunk of up to MAX_BATCH_FLOWERS flowers
REQUEST_ID_HEADER = "X-Request-ID"


@dataclass(frozen=True)
class Outcome:
    """What one Classify click produced, ready to show."""

    headline: str
    probabilities: dict[str, float] | None
    model_version: str
    warning: str
    field_errors: dict[str, str]
    status: str
    request_id: str = ""  # the answer's id, what POST /feedback names the prediction by
    species: str = ""


def service_down_message(api_url: str) -> str:
    return (
        f"**The classifier service at {api_url} is not answering.** "
        "Start it with `make serve` (or `make run` on a fresh clone), then click Classify again."
    )


def field_errors_from(body: Any) -> tuple[dict[str, str], str]:
    """Map the service's 400 detail to {field: message}; the rest becomes a general message."""
    errors: dict[str, str] = {}
    general: list[str] = []
    details = body.get("detail", []) if isinstance(body, dict) else []
    for item in details if isinstance(details, list) else []:
        location = item.get("loc") or []
        message = str(item.get("msg", "invalid value"))
        if location and location[-1] in FEATURES:
            errors.setdefault(location[-1], f"{FEATURE_LABELS[location[-1]]}: {message}")
        else:
            general.append(message)
    if not errors and not general:
        general.append(str(body.get("error", body)) if isinstance(body, dict) else str(body))
    return errors, "; ".join(general)


def classify_over_http(api_url: str, values: list[Any]) -> Outcome:
    """POST the four measurements to /classify and turn any answer (or none) into an Outcome."""
    flower = dict(zip(FEATURES, values, strict=True))
    try:
        response = requests.post(f"{api_url}/classify", json=flower, timeout=TIMEOUT_S)
    except requests.RequestException:
        return Outcome("", None, "", "", {}, service_down_message(api_url))
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:200]}
    if 400 <= response.status_code < 500:
        errors, general = field_errors_from(body)
        status = "**The service refused these measurements.**" + (f" {general}" if general else "")
        return Outcome("", None, "", "", errors, status)
    if response.status_code != 200:
        return Outcome("", None, "", "", {}, f"**The service answered HTTP {response.status_code}.** Try again.")
    probabilities = body["probabilities"]
    species = body["species"]
    warning = ""
    if body.get("warnings"):
        names = ", ".join(FEATURE_LABELS[name] for name in body["warnings"])
        warning = f"Outside the range seen in training: {names}. The prediction is less certain."
    return Outcome(
        headline=f"## {species} ({probabilities[species]:.0%})",
        probabilities=probabilities,
        model_version=body["model_version"],
        warning=warning,
        field_errors={},
        status="",
        request_id=str(body.get("request_id") or response.headers.get(REQUEST_ID_HEADER, "")),
        species=species,
    )


def feedback_over_http(api_url: str, request_id: str, species: str) -> str:
    """POST the true species of the flower classified as `request_id` to /feedback; what to tell the person.

    The demo sends no token: when the service requires one (IRIS_FEEDBACK_TOKEN), a page anyone can open
    must not be a way around it, so the refusal is shown as it is.
    """
    if not request_id:
        return "**Classify a flower first**, then say what it really is."
    label = {"request_id": request_id, "species": species}
    try:
        response = requests.post(f"{api_url}/feedback", json=label, timeout=TIMEOUT_S)
    except requests.RequestException:
        return (
            f"**The classifier service at {api_url} is not answering; your label was not recorded.** "
            "Start it with `make serve`, then send it again."
        )
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:200]}
    if response.status_code == 200 and isinstance(body, dict):
        if not body.get("recorded", True):
            return f"Already recorded: this flower is a **{species}**."
        if body.get("correct") is False:
            return f"**Thanks, recorded:** a {species} (the model said {body.get('predicted')})."
        return f"**Thanks, recorded:** a {species}."
    message = str(body.get("error", body)) if isinstance(body, dict) else str(body)
    if response.status_code == 401:
        return f"**The service only takes labels from authorized clients**, not from this page. ({message})"
    if response.status_code == 429:
        wait = response.headers.get("Retry-After", "a few")
        return f"**Too many labels from here just now; not recorded.** Try again in {wait} s."
    return f"**The service did not record the label (HTTP {response.status_code}).** {message}"


def api_url_of(request: gr.Request | None, configured: str | None) -> str:
    """The configured URL, or (mounted in the service) the loopback address of the server we run in."""
    if configured:
        return configured.rstrip("/")
    scope = getattr(getattr(request, "request", None), "scope", None) or {}
    server = scope.get("server")
    if server:
        return f"http://127.0.0.1:{server[1]}"
    return DEFAULT_API_URL


def build_demo(*, api_url: str | None, card: ModelCard) -> gr.Blocks:
    """Four measurements in, species, probabilities, model version and warnings out.

    The inputs start at the training medians and name the training ranges, from the model's card.
    """
    # Uploaded and scored files leave Gradio's cache after an hour (and all of it when the server restarts).
    with gr.Blocks(title="Iris species classifier", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# Iris species classifier\n"
            "Enter the four measurements of one flower, in centimetres, and click **Classify**."
        )
        with gr.Row(equal_height=False):
            with gr.Column(min_width=300):
                inputs, error_boxes = [], []
                for name in FEATURES:
                    low, high = card.feature_ranges_cm[name]
                    inputs.append(
                        gr.Number(
                            value=card.feature_medians_cm[name],
                            label=FEATURE_LABELS[name],
                            info=f"seen in training: {low:g} to {high:g} cm",
                            elem_id=f"input-{name}",
                        )
                    )
                    error_boxes.append(gr.Markdown("", visible=False, elem_id=f"error-{name}"))
                button = gr.Button("Classify", variant="primary", elem_id="classify")
                gr.Examples(
                    examples=[[EXAMPLE_FLOWERS[s][name] for name in FEATURES] for s in SPECIES],
                    example_labels=list(SPECIES),
                    inputs=inputs,
                    label="One flower of each species (Fisher, 1936)",
                )
            with gr.Column(min_width=300):
                status = gr.Markdown("", elem_id="status")
                headline = gr.Markdown("", elem_id="species")
                chart = gr.Label(label="Probability per species", num_top_classes=len(SPECIES), elem_id="chart")
                warning = gr.Markdown("", elem_id="warning")
                version = gr.Textbox(label="Model version", interactive=False, elem_id="model-version")
                # Ground truth: shown once there is a prediction to judge; "right" counts as much as "wrong"
                # (with only corrections, the live accuracy would only ever see mistakes).
                # What the shown prediction is, for its label. Hidden fields, not gr.State: session state makes
                # Gradio hold a heartbeat connection open for as long as the page is.
                request_id = gr.Textbox(visible=False)
                predicted = gr.Textbox(visible=False)
                # A plain column (not a gr.Group, which paints its children on one grey panel): the control
                # reads as part of the result above it.
                with gr.Column(visible=False, elem_id="feedback") as feedback_group:
                    gr.Markdown("**Do you know this flower?** Tell the service, and it learns from it.")
                    right = gr.Button("Right", size="md", elem_id="feedback-right")
                    # Inputs without their block frame (container=False): one line of the page, the button
                    # as tall as the dropdown.
                    with gr.Row(equal_height=True):
                        gr.Markdown("Wrong, it is a", container=False, elem_id="feedback-wrong")
                        truth = gr.Dropdown(
                            choices=list(SPECIES),
                            value=None,
                            label="Wrong, it is a",
                            show_label=False,
                            container=False,
                            elem_id="feedback-species",
                            scale=2,
                        )
                        wrong = gr.Button("Send", size="md", elem_id="feedback-send", scale=1)
                feedback_status = gr.Markdown("", elem_id="feedback-status")
                gr.Markdown("**What the measurements mean**")
                gr.Image(
                    str(ASSETS / "iris-parts.svg"),
                    show_label=False,
                    buttons=[],
                    interactive=False,
                    container=True,
                )
        csv_section(api_url)

        # Gradio injects the request by the annotation, so it must be a real type (no postponed annotations).
        def on_classify(
            sepal_length: Any, sepal_width: Any, petal_length: Any, petal_width: Any, request: gr.Request
        ) -> list[Any]:
            values = [sepal_length, sepal_width, petal_length, petal_width]
            outcome = classify_over_http(api_url_of(request, api_url), values)
            boxes = [
                gr.update(value=f"⚠ {outcome.field_errors[name]}", visible=True)
                if name in outcome.field_errors
                else gr.update(value="", visible=False)
                for name in FEATURES
            ]
            judged = bool(outcome.request_id)
            return [
                outcome.status,
                outcome.headline,
                outcome.probabilities,
                outcome.warning,
                outcome.model_version,
                *boxes,
                outcome.request_id,
                outcome.species,
                gr.update(visible=judged),
                gr.update(value=f"Right, it is a {outcome.species}" if judged else "Right"),
                gr.update(value=None),
                "",
            ]

        button.click(
            on_classify,
            inputs=inputs,
            outputs=[status, headline, chart, warning, version, *error_boxes, request_id, predicted, feedback_group,
                     right, truth, feedback_status],
            api_name="classify",
        )  # fmt: skip

        def on_right(judged_id: str, species: str, request: gr.Request) -> str:
            return feedback_over_http(api_url_of(request, api_url), judged_id, species)

        def on_wrong(judged_id: str, species: str | None, request: gr.Request) -> str:
            if not species:
                return "**Pick the species it really is**, then click Send."
            return feedback_over_http(api_url_of(request, api_url), judged_id, species)

        right.click(on_right, inputs=[request_id, predicted], outputs=[feedback_status], api_visibility="private")
        wrong.click(on_wrong, inputs=[request_id, truth], outputs=[feedback_status], api_visibility="private")
    return demo


# ---- a CSV file of flowers, scored through /classify_batch ----

SCORED_FILES_MAX_AGE_S = 3600.0  # a scored file is downloaded right after scoring; older ones are removed


def scored_files_dir() -> Path:
    """This process's folder of scored files, pruned of those older than SCORED_FILES_MAX_AGE_S."""
    folder = Path(tempfile.gettempdir()) / f"iris-demo-scored-{os.getuid()}-{os.getpid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    for old in folder.glob("*/*.csv"):
        with contextlib.suppress(OSError):  # another upload may be pruning the same file
            if time.time() - old.stat().st_mtime > SCORED_FILES_MAX_AGE_S:
                old.unlink()
                old.parent.rmdir()
    return folder


def batch_poster(api_url: str) -> flower_file.Poster:
    """POST a body to the service's /classify_batch: (status, parsed answer)."""

    def post(body: bytes) -> tuple[int, Any]:
        response = requests.post(
            f"{api_url}/classify_batch",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=BATCH_TIMEOUT_S,
        )
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text[:200]

    return post


def score_file(api_url: str, path: str | None) -> tuple[str, dict[str, list[Any]] | None, str | None]:
    """An uploaded CSV -> (what to tell the person, the table to show, path of the scored CSV)."""
    if not path:
        return "", None, None
    upload = Path(path)
    try:
        header, rows = flower_file.read_table(upload.read_bytes())
        scored = flower_file.score_table(header, rows, batch_poster(api_url))
    except flower_file.FileRefused as refused:
        return f"**This file cannot be scored:** {refused}.", None, None
    except requests.RequestException:
        return (
            (
                f"**The classifier service at {api_url} is not answering; nothing was scored.** "
                "Start it with `make serve`, then upload the file again."
            ),
            None,
            None,
        )
    except flower_file.ServiceFailed as failed:
        return f"**The service did not score the file; nothing is shown.** {failed}", None, None
    out = Path(tempfile.mkdtemp(dir=scored_files_dir())) / f"{upload.stem}-scored.csv"
    out.write_text(scored.csv_text(), encoding="utf-8")
    return flower_file.summary(scored), flower_file.display_table(scored), str(out)


def csv_section(api_url: str | None) -> None:
    """Upload a CSV of flowers; a table of every row, scored or refused with its error, and the scored CSV."""
    limit_mb = flower_file.MAX_UPLOAD_BYTES / 1_000_000
    gr.Markdown(
        "## Classify a file of flowers\n"
        f"Upload a CSV file (UTF-8) whose first line names the columns {', '.join(f'`{n}`' for n in FEATURES)} "
        "(in cm); other columns come back unchanged. Every row comes back: scored, or with the reason it was "
        "refused in the `error` column.\n\n"
        f"**Size limit:** {limit_mb:g} MB (about 50,000 flowers), scored in requests of at most "
        f"{MAX_BATCH_FLOWERS:,} flowers.",
        elem_id="csv-intro",
    )
    with gr.Row(equal_height=False):
        upload = gr.File(label="CSV file of flowers", file_types=[".csv"], type="filepath", elem_id="csv-upload")
        download = gr.File(label="Scored file (CSV)", interactive=False, elem_id="csv-download")
    status = gr.Markdown("", elem_id="csv-status")
    table = gr.Dataframe(
        visible=False, interactive=False, wrap=True, show_row_numbers=True, max_height=420, elem_id="csv-table"
    )

    def on_upload(path: str | None, request: gr.Request) -> list[Any]:
        message, table_value, scored = score_file(api_url_of(request, api_url), path)
        if not table_value:
            return [message, gr.update(visible=False), scored]
        # columns of a readable width, the error's wide enough for its sentence; the table scrolls sideways
        widths = ["360px" if name == "error" else "120px" for name in table_value["headers"]]
        return [message, gr.update(value=table_value, column_widths=widths, visible=True), scored]

    upload.upload(on_upload, inputs=[upload], outputs=[status, table, download], api_name="score_file")
    cleared = ["", gr.update(visible=False), None]
    upload.clear(lambda: cleared, outputs=[status, table, download], api_visibility="private")


# How the page is served, by `launch` (standalone) and by `gr.mount_gradio_app` (in the service): no
# "use via API" link (the service's own API is the one to use), no run history kept in the browser, and
# uploads within the CSV limit. SSR and analytics follow GRADIO_SSR_MODE and GRADIO_ANALYTICS_ENABLED,
# which the project sets off (iris_classifier/project/environment.py, bentofile.yaml).
SERVING_OPTIONS: dict[str, Any] = {
    "footer_links": ["gradio", "settings"],
    "run_history": False,
    "max_file_size": flower_file.MAX_UPLOAD_BYTES,
    "css": "#feedback-wrong { align-self: center; }",  # the words beside the dropdown, on its line
}


def mounted_app(*, path: str, card: ModelCard, max_concurrency: int | None = None) -> Any:
    """A FastAPI app serving the UI at `path` (Gradio's `mount_gradio_app`), for the service to serve at that path.

    Its events run up to `max_concurrency` at once, like the service's own requests."""
    from fastapi import FastAPI

    blocks = build_demo(api_url=None, card=card).queue(default_concurrency_limit=max_concurrency)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    return gr.mount_gradio_app(app, blocks, path=path, show_error=False, **SERVING_OPTIONS)


def model_card(api_url: str) -> ModelCard:
    """The served model's card from the service; the pipeline's own card when the service is down."""
    try:
        response = requests.get(f"{api_url}/model", timeout=TIMEOUT_S)
        if response.status_code == 200:
            return ModelCard.from_dict(response.json())
    except (requests.RequestException, ValueError, TypeError):
        pass
    return ModelCard.read()


def standalone(api_url: str) -> gr.Blocks:
    return build_demo(api_url=api_url, card=model_card(api_url))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api-url", default=os.environ.get(API_URL_ENV, DEFAULT_API_URL))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    print(f"demo: calling the service at {args.api_url}; open http://{args.host}:{args.port}")
    try:
        demo = standalone(args.api_url.rstrip("/"))
    except ModelNotFoundError as missing:
        print(f"demo: the service at {args.api_url} is not answering and {missing}", file=sys.stderr)
        return 1
    demo.launch(server_name=args.host, server_port=args.port, **SERVING_OPTIONS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
