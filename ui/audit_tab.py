"""The Audit tab: a thin layer over :func:`audit.engine.run_audit`, the engine ``python -m audit`` runs.

Layout and handlers together. The tab collects the same settings as the CLI (restorers, degradations,
strengths, sample size, seed, embedder, data), builds an :class:`audit.config.AuditConfig`, runs it into a
per-request temporary folder and hands back the group table, the report's plotly figures and the CSV files. An
uploaded data zip is extracted into its own temporary folder and deleted when the request ends.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import pandas as pd

from audit import report
from audit.data.fairface import ATTRIBUTION
from audit.engine import AuditConfig, run_audit
from audit.parallel import make_engine
from deblur.restore import WEIGHTS_DIR, offered_models
from deblur.restore.classical import classical_restorers
from deblur.strengths import AUDIT_GRID, STRENGTHS, format_grid, parse_strengths
from ui import uploads
from ui.common import DEGRADATION_LABELS, EXTERNAL_HELP, ON_SPACES, external_specs, gpu
from ui.errors import user_errors

__all__ = ["AuditRun", "DEFAULT_STRENGTHS", "MAX_FIGURES", "TABLE_COLUMNS", "audit_request", "extract_zip",
           "model_choices", "outputs_for_ui", "parse_strengths_text", "restorer_update", "run_audit_request", "tab"]

DEFAULT_STRENGTHS = format_grid(AUDIT_GRID)
MAX_FIGURES = 8  # the report makes 2 per group attribute + 1 (3 predicted attributes → 7)
MAX_ZIP_FILES = 20_000
MAX_ZIP_BYTES = 2_000_000_000  # uncompressed: a zip bomb stops here
SOURCE_WORDS = {"prediction": "**predicted by models, not ground truth**", "label": "from the data set's own labels"}
STAGES = {"clean": "Cropping and embedding the clean faces", "audit": "Degrading, restoring and measuring"}
# The columns a person reads first; the downloadable groups.csv has all of them.
TABLE_COLUMNS = ["model", "model_family", "degradation", "strength", "attribute", "group", "label_source", "n",
                 "n_evaluated", "sim_mean", "sim_mean_lo", "sim_mean_hi", "fail_rate", "rank1_restored",
                 "rank1_degraded", "psnr_mean", "delta_ita_mean", "sim_ratio", "small_group", "significant"]


KIND_WORDS = {"gaussian": "Gaussian blur", "pixelate": "pixelation", "motion": "motion blur"}
DATASETS = {"builtin": "Built-in generated faces (offline)",
            "fairface": "FairFace validation split (Hugging Face Hub, needs internet once)"}
FAIRFACE_CREDIT = f"{ATTRIBUTION}. Its race labels are annotator judgements, not self-identification."


def model_choices(kinds: Sequence[str] = tuple(STRENGTHS), weights_dir: Path = WEIGHTS_DIR) -> list[tuple[str, str]]:
    """``(label, name)`` of every restorer the audit can run on any of ``kinds``, without loading a model.

    The same restorers as :func:`deblur.restore.restorer_names`, labelled for people: learned models by their
    manifest label and the degradation they were trained for, the classical baselines and ``none`` by theirs.
    """
    choices: dict[str, str] = {}
    for kind in kinds:
        for name, entry in offered_models(weights_dir, kind).items():
            choices.setdefault(name, f"{entry.get('label', name)}, for {KIND_WORDS.get(kind, kind)}")
        for name, restorer in classical_restorers(kind).items():
            choices.setdefault(name, restorer.label)
    return [(label, name) for name, label in choices.items()]


def restorer_update(kinds: Sequence[str], ticked: Sequence[str] | None) -> dict:
    """The Restorers box after the degradations change: only restorers for the ticked kinds, ticks kept."""
    choices = model_choices(kinds or ())
    names = {name for _, name in choices}
    return gr.update(choices=choices, value=[t for t in ticked or () if t in names])


def parse_strengths_text(kinds: Sequence[str], text: str | None) -> dict[str, tuple[float, ...]]:
    """Strengths per degradation from the tab's text box, with the parser of every CLI.
    ``"gaussian=2,4 motion=9"`` sets per-kind lists, bare numbers apply to every kind; kinds left out get the
    CLI defaults, lists for kinds not selected are ignored.

    Raises:
        gr.Error: for malformed text, a kind that is not selected, or a strength out of range.
    """
    if not kinds:
        raise gr.Error("Choose at least one degradation.")
    try:
        # per-kind lists for kinds not ticked are ignored, so the default text works with any selection
        parsed = parse_strengths(text, list(kinds), AUDIT_GRID, ignore_unselected=True)
    except ValueError as exc:
        raise gr.Error(f"Strengths: {exc}") from exc
    for kind, values in parsed.items():
        spec = STRENGTHS[kind]
        bad = [v for v in values if not spec.low <= v <= spec.high]
        if bad or not values:  # the offered range also bounds the work one request can ask for
            raise gr.Error(f"Strengths: {kind} takes {spec.name} from {spec.low:g} to {spec.high:g}, got "
                           f"{', '.join(f'{v:g}' for v in bad) or 'none'}.")
    return parsed


def extract_zip(archive: str | Path | bytes, dest: Path, max_files: int = MAX_ZIP_FILES,
                max_bytes: int = MAX_ZIP_BYTES) -> Path:
    """Extract a data zip safely into ``dest`` (no paths outside it, bounded size) and return the data root.

    If the zip holds a single top-level folder, that folder is the root.

    Args:
        archive: the zip file, or its bytes (the app reads an upload into memory and deletes it first).

    Raises:
        gr.Error: not a zip, damaged (bad checksum, truncated), too many files, too large uncompressed, or a
            member escaping ``dest``.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(archive) if isinstance(archive, bytes) else archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise gr.Error("The data upload is not a readable .zip file.") from exc
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > max_files:
            raise gr.Error(f"The zip holds {len(members)} files; the app takes at most {max_files}.")
        if sum(m.file_size for m in members) > max_bytes:
            raise gr.Error(f"The zip unpacks to more than {max_bytes / 1e9:.0f} GB; use the command line instead.")
        root = dest.resolve()
        for m in members:
            target = (root / m.filename).resolve()
            if not target.is_relative_to(root):
                raise gr.Error(f"The zip contains an unsafe path ({m.filename!r}); refusing to extract it.")
        for m in members:
            try:
                zf.extract(m, root)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise gr.Error(f"The zip is damaged: {m.filename!r} cannot be extracted ({exc}). Create the zip "
                               "again (or test it with `unzip -t`) and upload it again.") from exc
    entries = [p for p in root.iterdir() if not p.name.startswith(("__MACOSX", "."))]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else root


@dataclass
class AuditRun:
    """What one audit request shows.

    Attributes:
        status: Markdown summary (data, threshold, counts, caveats).
        table: the group table (every column of ``groups.csv``).
        figures: plotly figures from :func:`audit.report.figures`.
        groups_csv: the group report CSV (for the download button).
        files: every CSV/JSON/HTML file the run wrote.
    """

    status: str
    table: pd.DataFrame
    figures: list = field(default_factory=list)
    groups_csv: Path | None = None
    files: list[Path] = field(default_factory=list)


def _status(result, config: AuditConfig, table: pd.DataFrame, data_note: str) -> str:
    thr = result.threshold
    threshold = (f"match threshold {thr.distance:.3f} (L2), calibrated at a {config.fmr:.0%} false-match rate on "
                 "this data's impostor pairs" if thr is not None else "no match threshold (fewer than 2 faces)")
    sources = sorted(set(table.get("label_source", pd.Series(dtype=str)).dropna()) - {"all"})
    lines = [
        f"**Audited {result.n_images} faces** ({data_note}) in {result.seconds:.0f} s with the "
        f"`{config.embedder}` embedder; {threshold}.",
        f"{result.n_no_face_clean} had no face the embedder could use; {len(result.skipped)} files were skipped.",
        "Groups: " + ("; ".join(SOURCE_WORDS.get(s, s) for s in sources) or "none") + ".",
    ]
    if "small_group" in table and table["small_group"].any():
        lines.append(f"Groups with fewer than {config.min_group_n} faces are flagged `small_group`: their intervals "
                     "are wide and differences are not evidence. Raise the sample size for real conclusions.")
    for model, counts in getattr(result, "status_counts", {}).items():
        failed = {k: v for k, v in counts.items() if k.startswith("error")}
        if failed:
            lines.append(f"`{model}`: " + ", ".join(f"{v} rows {k}" for k, v in sorted(failed.items()))
                         + " (counted in `n_error`, left out of the statistics; per_image.csv's `note` says why).")
    lines.append("`sim_mean`: centred cosine similarity of restored vs clean face (higher = identity kept); "
                 "`fail_rate`: share no longer matched to the clean face; `sim_ratio`: group vs reference group.")
    return "\n\n".join(lines)


def run_audit_request(models: Sequence[str] | None, kinds: Sequence[str], strengths: str | None, n: int, seed: int,
                      embedder: str = "dlib", data_zip: str | Path | bytes | None = None,
                      labels_csv: str | Path | bytes | None = None, *, dataset: str = "builtin",
                      allow_upload: bool = True, n_boot: int = 500,
                      progress: Callable[[str, int, int], None] | None = None, work: Path | None = None,
                      zip_name: str | None = None, workers: int = 1, external: str | None = None) -> AuditRun:
    """Run one audit for the app, exactly as ``python -m audit`` would with these settings.

    Args:
        models: restorer names (``None`` or empty: every restorer available per degradation).
        kinds: degradations to audit.
        strengths: strengths text (see :func:`parse_strengths_text`).
        n: at most this many faces.
        seed: seed for bootstrap, permutation tests and calibration sampling.
        embedder: ``"dlib"`` or ``"facenet"``.
        data_zip: optional zip of face images (folder format) instead of the built-in set: a path, or its bytes.
        labels_csv: labels CSV for the zip (``path`` + group columns; a path or its bytes); a CSV inside the zip
            is used otherwise.
        dataset: ``"builtin"`` or ``"fairface"`` (the FairFace validation split from the Hugging Face Hub, with
            its labels; needs internet once). Offline, the error says so: we never switch sets silently.
        allow_upload: ``False`` on a public Space: uploaded data sets are refused.
        n_boot: bootstrap resamples.
        progress: ``progress(stage, done, total)`` callback.
        work: folder for this request's report and extracted upload (the app passes a temporary folder it
            deletes once the outputs are published); default: a new temporary folder left to the caller.
        zip_name: the upload's file name, for the status line.
        workers: worker processes of the audit engine (the app gives each queued request its share of the
            cores; 1 runs in this process). The rows are the same whatever the count.
        external: the tab's external restorer field (Gradio app URLs / Space ids; local runs only), audited
            next to the chosen restorers and labelled ``external``.

    Raises:
        gr.Error: for any bad setting or unusable data, with what to change.
    """
    degradations = parse_strengths_text(kinds, strengths)
    if dataset not in DATASETS:
        raise gr.Error(f"Unknown face set {dataset!r}; choose one of {sorted(DATASETS)}.")
    if dataset != "builtin" and data_zip:
        raise gr.Error("Choose either an uploaded zip or FairFace, not both.")
    if not 1 <= int(n) <= 2000:
        raise gr.Error("Sample size must be between 1 and 2000 faces.")
    if data_zip and not allow_upload:
        raise gr.Error("Uploading a data set is only available when you run the app locally (python app.py).")
    try:
        specs = external_specs(external)
    except ValueError as exc:
        raise gr.Error(str(exc)) from exc
    work = Path(work) if work is not None else Path(tempfile.mkdtemp(prefix="facedrift-audit-"))
    upload_dir = work / "upload" if data_zip else None
    try:
        config = AuditConfig(models=list(models) if models else None, degradations=degradations,
                             embedder=embedder, out=str(work / "report"), n=int(n), n_boot=n_boot, seed=int(seed),
                             contact_sheets=False, plotlyjs="cdn", external=specs)
        data_note = "built-in generated faces, test split"
        if dataset == "fairface":
            config.data = "fairface"
            data_note = f"FairFace validation split, labelled groups; {FAIRFACE_CREDIT}"
        if upload_dir is not None:
            upload_dir.mkdir(parents=True)
            root = extract_zip(data_zip, upload_dir)
            if isinstance(labels_csv, bytes):
                labels = work / "labels.csv"
                labels.write_bytes(labels_csv)
            else:
                labels = Path(labels_csv) if labels_csv else next(iter(sorted(root.glob("*.csv"))), None)
            config.data, config.labels = str(root), str(labels) if labels else None
            name = zip_name or (Path(data_zip).name if not isinstance(data_zip, bytes) else "a zip")
            data_note = f"your upload, {name}"
        try:
            with make_engine("local", workers) as engine:
                result = run_audit(config, progress=progress, engine=engine)
        except gr.Error:
            raise
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            raise gr.Error(f"The audit could not run: {exc}") from exc
    finally:
        if upload_dir is not None:
            shutil.rmtree(upload_dir, ignore_errors=True)  # uploaded faces never outlive the request
    try:
        table = pd.read_csv(result.groups_csv)
    except (FileNotFoundError, pd.errors.EmptyDataError):  # every face failed: the status says how many
        table = pd.DataFrame()
    figures = report.figures(table, f" — {config.embedder}") if not table.empty else []
    files = [p for p in result.files if p.suffix in (".csv", ".json", ".html")]
    return AuditRun(_status(result, config, table, data_note), table, figures,
                    result.groups_csv if result.groups_csv and result.groups_csv.is_file() else None, files)


def outputs_for_ui(run: AuditRun, slots: int = MAX_FIGURES, publish: Callable[[Path], str] = str) -> list:
    """Flatten a run into the tab's outputs: status, table, download button, files, ``slots`` plots.

    Args:
        publish: turns a report file into the path handed to Gradio (the app copies it into Gradio's cache,
            which deletes it after a stated lifetime, so the request's own folder can go at once).
    """
    shown = run.table[[c for c in TABLE_COLUMNS if c in run.table]].round(3) if not run.table.empty else run.table
    plots = [gr.update(value=fig, visible=True) for fig in run.figures[:slots]]
    plots += [gr.update(value=None, visible=False)] * (slots - len(plots))
    download = (gr.update(value=publish(run.groups_csv), visible=True) if run.groups_csv
                else gr.update(visible=False))
    return [run.status, shown, download, [publish(p) for p in run.files], *plots]


@gpu
@user_errors
def audit_request(models: list[str], kinds: list[str], strengths: str, n: float, seed: float, embedder: str,
                  data_zip: str | None, labels_csv: str | None, dataset: str = "builtin", external: str = "",
                  progress: gr.Progress = gr.Progress()) -> list:  # noqa: B008 - Gradio injects progress via the default
    """The Run button: the engine of ``python -m audit``, with live progress."""

    def report_progress(stage: str, done: int, total: int) -> None:
        progress((done, total), desc=STAGES.get(stage, stage), unit="faces")

    # Uploads are read into memory and deleted before any work; the report is written into a temporary folder
    # that is deleted as soon as its files are published into Gradio's cache (which expires them).
    zip_bytes = uploads.consume(data_zip) if data_zip else None
    csv_bytes = uploads.consume(labels_csv) if labels_csv else None
    with tempfile.TemporaryDirectory(prefix="facedrift-audit-") as work:
        run = run_audit_request(models, kinds, strengths, int(n), int(seed), embedder, zip_bytes, csv_bytes,
                                dataset=dataset, allow_upload=not ON_SPACES, progress=report_progress,
                                work=Path(work), zip_name=Path(data_zip).name if data_zip else None,
                                workers=AUDIT_WORKERS, external=external)
        return outputs_for_ui(run, publish=uploads.publish)


# The queue runs ui.build.CONCURRENCY_LIMIT (2) requests at once: an audit runs the engine on its share of the
# cores (1 on 2 cores: in the server process; a 16-core host gets a pool of 8). Same rows whatever the count.
AUDIT_WORKERS = max(1, (os.cpu_count() or 1) // 2)


def tab() -> None:
    """Lay out the Audit tab and wire its events (inside a ``gr.Blocks``)."""
    with gr.Tab("Audit", id="audit"):
        gr.Markdown(
            "Measure how much each restorer changes **who** a face is, per group of people. Same engine as "
            "`python -m audit`. The built-in faces are synthetic and their groups are *predicted*; keep the sample "
            "small here (about 1 s per face and setting on a CPU) and use the command line for full runs."
        )
        with gr.Row():
            with gr.Column():
                kinds = gr.CheckboxGroup([(v, k) for k, v in DEGRADATION_LABELS.items()],
                                         value=["gaussian"], label="Degradations")
                models = gr.CheckboxGroup(model_choices(["gaussian"]),
                                          label="Restorers for these degradations (none ticked = all of them)")
                strengths = gr.Textbox(value=DEFAULT_STRENGTHS, label="Strengths (px of the 128-px crop)",
                                       info="kind=a,b per degradation; bare numbers apply to all")
            with gr.Column():
                n = gr.Slider(2, 400, value=24, step=1, label="Sample size (faces)")
                seed = gr.Number(value=0, precision=0, label="Seed")
                embedder = gr.Dropdown(["dlib", "facenet"], value="dlib", label="Identity embedder",
                                       info="facenet needs its VGGFace2 weights (not bundled)")
                dataset = gr.Radio([(v, k) for k, v in DATASETS.items()], value="builtin",
                                   label="Faces", info=FAIRFACE_CREDIT)
                with gr.Accordion("Your own data (local runs only)", open=False, visible=not ON_SPACES):
                    gr.Markdown("A zip of face images plus a labels CSV (`path` relative to the zip, then group "
                                "columns). Extracted to a temporary folder and deleted after the run.")
                    data_zip = gr.File(label="Images (.zip)", file_types=[".zip"], type="filepath")
                    labels_csv = gr.File(label="Labels (.csv)", file_types=[".csv"], type="filepath")
                with gr.Accordion("External restorer (local runs only)", open=False, visible=not ON_SPACES):
                    external = gr.Textbox(value="", label="Gradio app URL or Space id", info=EXTERNAL_HELP, lines=1,
                                          placeholder="http://127.0.0.1:7860/#/predict")
        run = gr.Button("Run audit", variant="primary")
        status = gr.Markdown()
        # wrap=False: 19 narrow columns would wrap their headers letter by letter; the table scrolls sideways instead
        table = gr.Dataframe(headers=TABLE_COLUMNS, label="Per-group results (groups.csv, main columns)",
                             interactive=False, wrap=False)
        with gr.Row():
            download = gr.DownloadButton("Download group report (CSV)", visible=False)
            files = gr.File(label="All report files", file_count="multiple", interactive=False)
        plots = [gr.Plot(visible=False) for _ in range(MAX_FIGURES)]
        kinds.change(restorer_update, [kinds, models], models, api_name=False)
        run.click(audit_request,
                  [models, kinds, strengths, n, seed, embedder, data_zip, labels_csv, dataset, external],
                  [status, table, download, files, *plots], api_name="audit")
