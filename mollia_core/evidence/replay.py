"""Stored evidence: MoLLIA's own evidence file format, and a source that replays it.

File format (``*.evidence.jsonl``; UTF-8 JSON Lines)
----------------------------------------------------
Line 1 is a header that names the format and its version::

    {"format": "mollia-evidence", "version": 1}

Every further line is one record, what one model said about one text::

    {"text_id": "17",                      # the text's id in the user's dataset
     "model": "qwen2.5-coder-1.5b",        # the evidence source's name
     "labels": ["negative", "positive"],   # label order of the two vectors below
     "label_probs": [0.12, 0.88],          # z (Eq. 1)
     "vote_shares": [0.1, 0.8],            # c (Eq. 2)
     "no_label_share": 0.1,                # share of answers naming no label or several
     "answers": ["positive", ...],         # raw sampled answers (may be empty)
     "text_sha256": "9f86d0...",           # optional: sha256 of the UTF-8 text, so a replay
                                           #   can find a text by its content, not only its id
     "text": "...",                        # optional: the text itself (include_texts=True)
     "meta": {...}}                        # optional: source-specific extras (JSON values)

Each record carries its own label list, so lines are self-contained: files can be
appended to or concatenated (a repeated header line is skipped), and one file may hold
several models. Floats are written with full precision; a replay returns the same numbers.

:class:`ReplaySource` replays the records of one model, from such a file or from a
directory in the paper's evidence layout (``mollia_core.evidence.paper``);
:func:`replay_panel` builds one per model of a :class:`PaperDataset`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .paper import PaperDataset, load_paper_evidence
from .parsing import vote_shares as parse_vote_shares
from .record import EvidenceRecord, PanelEvidence
from .source import Cancelled, EvidenceError, EvidenceSource, Progress, ProgressCallback, resolve_text_ids

__all__ = [
    "EVIDENCE_FORMAT",
    "json_line",
    "ReplaySource",
    "read_evidence_jsonl",
    "record_from_dict",
    "record_to_dict",
    "records_from_panel",
    "replay_panel",
    "text_sha256",
    "write_evidence_jsonl",
]

EVIDENCE_FORMAT = {"format": "mollia-evidence", "version": 1}
_REQUIRED = ("text_id", "model", "labels", "label_probs", "vote_shares")


def text_sha256(text: str) -> str:
    """The key a text is known by in stored evidence and caches."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# The file format


def write_evidence_jsonl(
    path: str | Path,
    records: Iterable[EvidenceRecord],
    texts: Mapping[str, str] | None = None,
    *,
    include_texts: bool = False,
) -> Path:
    """Write ``records`` in MoLLIA's evidence format (see the module docstring).

    ``texts`` (text id -> text), when given, adds each text's sha256 so a replay can
    match texts by content; with ``include_texts`` the texts themselves are written too.
    The file is written to a temporary name and renamed, so it is never half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            out.write(json.dumps(EVIDENCE_FORMAT) + "\n")
            for record in records:
                line = record_to_dict(record)
                if texts is not None and record.text_id in texts:
                    line["text_sha256"] = text_sha256(texts[record.text_id])
                    if include_texts:
                        line["text"] = texts[record.text_id]
                out.write(json_line(line) + "\n")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)  # a crash mid-write never leaves half a file under the real name
    return path


def read_evidence_jsonl(path: str | Path) -> list[EvidenceRecord]:
    """Read a file in MoLLIA's evidence format; a bad line raises EvidenceError naming it.

    A record's ``text_sha256`` and ``text`` (if stored) are returned in its ``meta``
    under those names.
    """
    path = Path(path)
    if not path.is_file():
        raise EvidenceError(f"evidence file {str(path)!r} not found: check the path")
    records = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as error:
                raise EvidenceError(
                    f"{path.name}, line {number}: not valid JSON ({error.msg}); the file may be truncated — "
                    "delete the broken line or write the file again"
                ) from None
            if isinstance(obj, dict) and obj.get("format") == EVIDENCE_FORMAT["format"]:
                if obj.get("version") != EVIDENCE_FORMAT["version"]:
                    raise EvidenceError(
                        f"{path.name}, line {number}: evidence format version {obj.get('version')!r}, this "
                        f"MoLLIA reads version {EVIDENCE_FORMAT['version']}: upgrade MoLLIA"
                    )
                continue
            if number == 1:
                raise EvidenceError(
                    f"{path.name} is not a MoLLIA evidence file: its first line should be "
                    f"{json.dumps(EVIDENCE_FORMAT)} (for the paper's layout use ReplaySource.from_paper)"
                )
            records.append(record_from_dict(obj, f"{path.name}, line {number}"))
    return records


def json_line(obj: dict) -> str:
    """One JSON line of the evidence format (numpy values in ``meta`` become plain JSON)."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_plain)


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"evidence meta value {value!r} ({type(value).__name__}) cannot be stored as JSON")


def record_to_dict(record: EvidenceRecord) -> dict:
    """One record as the JSON object of the evidence format."""
    line = {
        "text_id": record.text_id,
        "model": record.model,
        "labels": list(record.labels),
        "label_probs": [float(v) for v in record.label_probs],
        "vote_shares": [float(v) for v in record.vote_shares],
        "no_label_share": float(record.no_label_share),
        "answers": list(record.answers),
    }
    if record.meta:
        line["meta"] = record.meta
    return line


def record_from_dict(obj: object, where: str = "evidence record") -> EvidenceRecord:
    """A record from its JSON object; ``where`` names it in error messages."""
    if not isinstance(obj, dict):
        raise EvidenceError(f"{where}: a record must be a JSON object, got {type(obj).__name__}")
    missing = [key for key in _REQUIRED if key not in obj]
    if missing:
        raise EvidenceError(f"{where}: the record lacks {missing}; each record needs {list(_REQUIRED)}")
    labels = tuple(str(label) for label in obj["labels"])
    vectors = {}
    for key in ("label_probs", "vote_shares"):
        values = obj[key]
        if not isinstance(values, list) or len(values) != len(labels):
            raise EvidenceError(f"{where}: {key} must be a list of {len(labels)} numbers, one per label")
        try:
            vectors[key] = np.array(values, dtype=float)
        except (TypeError, ValueError):
            raise EvidenceError(f"{where}: {key} must hold numbers, got {values!r}") from None
        if not np.all(np.isfinite(vectors[key])):
            raise EvidenceError(f"{where}: {key} holds a non-finite number")
    no_label = obj.get("no_label_share")
    if no_label is None:
        no_label = max(0.0, 1.0 - float(vectors["vote_shares"].sum()))
    meta = dict(obj.get("meta") or {})
    if "text" in obj:
        meta["text"] = str(obj["text"])
        meta.setdefault("text_sha256", text_sha256(meta["text"]))
    if "text_sha256" in obj:
        meta["text_sha256"] = str(obj["text_sha256"])
    return EvidenceRecord(
        text_id=str(obj["text_id"]),
        model=str(obj["model"]),
        labels=labels,
        label_probs=vectors["label_probs"],
        vote_shares=vectors["vote_shares"],
        no_label_share=float(no_label),
        answers=tuple(str(a) for a in obj.get("answers") or ()),
        meta=meta,
    )


# ---------------------------------------------------------------------------------------------
# Replay


class ReplaySource(EvidenceSource):
    """Replays stored evidence of one model.

    Texts are found by content (sha256 of the text, when the store knows it) and by id:
    an id whose stored text differs from the requested text does not match, so a
    dataset numbered differently from the stored evidence cannot be silently misaligned.
    A text the store does not hold raises EvidenceError.

    records:  the model's records (all with the same model name).
    texts:    optional text id -> text, to match by content.
    """

    def __init__(
        self,
        records: Iterable[EvidenceRecord],
        texts: Mapping[str, str] | None = None,
        *,
        origin: str = "memory",
    ) -> None:
        self._records: dict[str, EvidenceRecord] = {}
        self._sha_of_id: dict[str, str] = {}
        self._ids_of_sha: dict[str, list[str]] = {}
        for record in records:
            self._records[record.text_id] = record
            sha = texts.get(record.text_id) if texts is not None else None
            sha = text_sha256(sha) if sha is not None else record.meta.get("text_sha256")
            if sha:
                self._sha_of_id[record.text_id] = sha
                self._ids_of_sha.setdefault(sha, []).append(record.text_id)
        if not self._records:
            raise EvidenceError(f"no stored evidence to replay from {origin}")
        models = sorted({r.model for r in self._records.values()})
        if len(models) > 1:
            raise EvidenceError(
                f"the evidence from {origin} holds several models {models}: replay one at a time "
                "(ReplaySource.from_jsonl(path, model=...))"
            )
        self.name = models[0]
        self.origin = origin
        digest = hashlib.sha256(origin.encode())
        for text_id, record in self._records.items():
            digest.update(text_id.encode())
            digest.update(np.ascontiguousarray(record.label_probs, dtype=float).tobytes())
            digest.update(np.ascontiguousarray(record.vote_shares, dtype=float).tobytes())
        self._cache_key = f"replay:{self.name}:{digest.hexdigest()[:16]}"

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_jsonl(cls, path: str | Path, model: str | None = None) -> "ReplaySource":
        """Replay ``model`` (may be omitted when the file holds one model) from an evidence file."""
        records = read_evidence_jsonl(path)
        models = sorted({r.model for r in records})
        if model is None and len(models) > 1:
            raise EvidenceError(f"{Path(path).name} holds the models {models}: name the one to replay")
        if model is not None:
            if model not in models:
                raise EvidenceError(f"{Path(path).name} holds no evidence of model {model!r}; it holds {models}")
            records = [r for r in records if r.model == model]
        return cls(records, origin=str(path))

    @classmethod
    def from_paper(cls, directory: str | Path, model: str, *, reparse_answers: bool = False) -> "ReplaySource":
        """Replay one model of a directory in the paper's evidence layout (e.g. paper-evidence/trec)."""
        panel = replay_panel(load_paper_evidence(directory), reparse_answers=reparse_answers)
        for source in panel:
            if source.name == model:
                return source
        raise EvidenceError(
            f"{directory} holds no evidence of model {model!r}; it holds {[s.name for s in panel]}"
        )

    # -- EvidenceSource ----------------------------------------------------------------------

    @property
    def cache_key(self) -> str:
        return self._cache_key

    @property
    def text_ids(self) -> tuple[str, ...]:
        return tuple(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> list[EvidenceRecord]:
        """Every stored record, in stored order."""
        return list(self._records.values())

    def evidence(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        text_ids: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[EvidenceRecord]:
        start = time.monotonic()
        labels = tuple(labels)
        if text_ids is not None:
            resolve_text_ids(texts, text_ids)  # validates one id per text
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        out = []
        for i, text in enumerate(texts):
            text_id = text_ids[i] if text_ids is not None else None
            record = self._find(text, text_id)
            out.append(_relabel(record, labels, text_id or record.text_id, self.origin))
        if progress is not None:
            progress(Progress(len(out), len(texts), time.monotonic() - start))
        return out

    def _find(self, text: str, text_id: str | None) -> EvidenceRecord:
        sha = text_sha256(text)
        candidates = self._ids_of_sha.get(sha, [])
        if candidates:
            return self._records[text_id if text_id in candidates else candidates[0]]
        if text_id is not None and text_id in self._records and text_id not in self._sha_of_id:
            return self._records[text_id]
        shown = text if len(text) <= 60 else text[:57] + "..."
        which = f"text id {text_id!r} ({shown!r})" if text_id is not None else f"text {shown!r}"
        mismatch = (
            " (that id is stored, but for a different text: the dataset's ids do not match the stored ones)"
            if text_id is not None and text_id in self._sha_of_id
            else ""
        )
        raise EvidenceError(
            f"no stored evidence of model {self.name!r} for {which}{mismatch}. The replay from "
            f"{self.origin} covers {len(self._records)} texts: compute this text's evidence with a live "
            "model, or load the evidence file that matches this dataset"
        )


def _relabel(record: EvidenceRecord, labels: tuple[str, ...], text_id: str, origin: str) -> EvidenceRecord:
    """The record over ``labels`` (the stored order may differ; the set may not)."""
    if labels == record.labels:
        order = None
    elif sorted(labels) == sorted(record.labels) and len(set(labels)) == len(labels):
        order = [record.labels.index(label) for label in labels]
    else:
        raise EvidenceError(
            f"the stored evidence from {origin} is over the labels {list(record.labels)}, not "
            f"{list(labels)}: replay it with the same label set, or compute new evidence"
        )
    return EvidenceRecord(
        text_id=text_id,
        model=record.model,
        labels=labels,
        label_probs=record.label_probs if order is None else record.label_probs[order],
        vote_shares=record.vote_shares if order is None else record.vote_shares[order],
        no_label_share=record.no_label_share,
        answers=record.answers,
        meta={k: v for k, v in record.meta.items() if k not in ("text_sha256", "text")},
    )


def records_from_panel(panel: PanelEvidence, *, reparse_answers: bool = False) -> list[list[EvidenceRecord]]:
    """Split a panel into ``records[j][i]``: model j's record on text i.

    With ``reparse_answers`` (and answers stored), c and the no-label share are recomputed
    from the raw answers with the robust parser (Eq. 2) instead of the stored values.
    """
    text_ids = panel.text_ids or tuple(str(i) for i in range(panel.n_texts))
    per_model = []
    for j, model in enumerate(panel.models):
        records = []
        for i, text_id in enumerate(text_ids):
            answers = tuple(panel.answers[i][j]) if panel.answers is not None else ()
            shares, no_label = panel.vote_shares[i, j], float(panel.no_label_share[i, j])
            if reparse_answers and answers:
                shares, no_label = parse_vote_shares(answers, panel.labels)
            records.append(
                EvidenceRecord(
                    text_id=text_id,
                    model=model,
                    labels=panel.labels,
                    label_probs=panel.label_probs[i, j],
                    vote_shares=shares,
                    no_label_share=no_label,
                    answers=answers,
                )
            )
        per_model.append(records)
    return per_model


def replay_panel(paper: PaperDataset, *, reparse_answers: bool = False) -> list[ReplaySource]:
    """One ReplaySource per model of a paper-evidence dataset, keyed by text id ("0".."n-1")
    and, where the texts are stored (trec), by text."""
    text_ids = paper.evidence.text_ids or tuple(str(i) for i in range(len(paper.evidence)))
    texts = dict(zip(text_ids, paper.texts)) if paper.texts is not None else None
    origin = f"paper evidence '{paper.name}'"
    return [
        ReplaySource(records, texts, origin=f"{origin} ({records[0].model})")
        for records in records_from_panel(paper.evidence, reparse_answers=reparse_answers)
    ]
