"""History: browse the audit log (filter by time, verdict, line, defect), view image + heatmap, export CSV,
and search it with CLIP by text or by example.

The view pages through the log folder's index (:mod:`inspector.audit.browse`): a page of rows at a time,
newest first, more as the table scrolls; memory stays bounded at any log size.

It imports neither the station nor torch / open_clip: the stand-alone viewer (``inspector history``,
:mod:`gui.viewer`) runs it on an office PC without them. Only a search by words or by an image file
needs a CLIP encoder, which its :class:`QueryModel` provides (the running station's engine, or the
viewer's backbone loaded on first use); "parts like the selected one" uses the stored embedding."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np
from PySide6.QtCore import QAbstractTableModel, QDateTime, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateTimeEdit,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from gui import theme
from gui.widgets.feedback import FeedbackBar, FeedbackPart
from gui.widgets.frame_view import FrameView
from gui.workers import TaskWorker, heat_rgba, run_task
from inspector.audit.browse import PAGE_ROWS, Browser, Page, Ranked, embedding_of, full_records, matches, to_query
from inspector.audit.history import ALL, HistoryFilter, HistoryRow, export_rows, record_media
from inspector.frames.imaging import load_image

if TYPE_CHECKING:
    from inspector.station.handle import StationHandle

COLUMNS = ("Time", "Part", "Line", "Verdict", "Score", "Threshold", "Defect", "Model", "Match")


class RecordModel(QAbstractTableModel):
    """The rows loaded so far (pages of the index), with the search similarity when a search ranked them.

    ``more``: a function giving the page after a row ([] at the end); Qt calls it as the table scrolls.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[HistoryRow] = []
        self.similarity: dict[int, float] = {}
        self.more: Callable[[HistoryRow], list[HistoryRow]] | None = None
        self._at_end = True

    def set_rows(self, rows: list[HistoryRow], similarity: dict[int, float] | None = None,
                 more: Callable[[HistoryRow], list[HistoryRow]] | None = None) -> None:
        self.beginResetModel()
        self.rows, self.similarity, self.more = list(rows), similarity or {}, more
        self._at_end = more is None or len(rows) < PAGE_ROWS  # a short page is the last
        self.endResetModel()

    def row_at(self, r: int) -> HistoryRow:
        return self.rows[r]

    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> bool:  # noqa: B008
        return not parent.isValid() and not self._at_end

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> None:  # noqa: B008
        if self._at_end or self.more is None or not self.rows:
            return
        page = self.more(self.rows[-1])
        if not page:
            self._at_end = True
            return
        self._at_end = len(page) < PAGE_ROWS
        self.beginInsertRows(QModelIndex(), len(self.rows), len(self.rows) + len(page) - 1)
        self.rows.extend(page)
        self.endInsertRows()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        i = int(row.record.get("id", -1))
        rec = row.record
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return time.strftime("%m-%d %H:%M:%S", time.localtime(int(rec["time_ns"]) / 1e9))
            if col == 1:
                return rec["part_id"]
            if col == 2:
                return rec["line"]
            if col == 3:
                return row.verdict_class
            if col in (4, 5):
                v = rec["score"] if col == 4 else rec["threshold"]
                return "-" if v is None or not math.isfinite(v) else f"{v:.3f}"
            if col == 6:
                return rec.get("defect") or ""
            if col == 7:
                return rec.get("model_version") or ""
            if col == 8:
                return f"{self.similarity[i]:.3f}" if i in self.similarity else ""
        if role == Qt.ItemDataRole.ForegroundRole and col == 3:
            return theme.qcolor(theme.VERDICT_COLOURS.get(row.verdict_class, theme.TEXT))
        if role == Qt.ItemDataRole.FontRole and col == 3:
            return theme.font(theme.BASE_PT, bold=True)
        return None


class LogSource(Protocol):
    """What the view reads of its owner: the log folder (a StationHandle has it)."""

    @property
    def log_dir(self) -> Path: ...


class QueryModel(Protocol):
    """Where a search by words or by an image file gets its query embedding."""

    def unavailable(self, kind: str) -> str | None:
        """Why a search by ``kind`` ("text" or "image") cannot run now; None when it can."""
        ...

    def ready(self) -> bool:
        """False while the encoder still has to be loaded (the view says so: the first query waits for it)."""
        ...

    def embed(self, query: str | np.ndarray, browser: Browser) -> tuple[np.ndarray, str | None]:
        """(unit embedding, the records' ``model`` it compares with); runs on a worker thread."""
        ...


class EngineQueries:
    """Queries through the station's engine for the line (the station GUI): the line must have started once."""

    def __init__(self, handle: StationHandle) -> None:
        self.handle = handle

    def unavailable(self, kind: str) -> str | None:
        if getattr(self.handle, "inspector", None) is None:
            return ("type a description (the line must have been started once)" if kind == "text"
                    else "start the line once to search by image")
        return None

    def ready(self) -> bool:
        return True

    def embed(self, query: str | np.ndarray, browser: Browser) -> tuple[np.ndarray, str | None]:
        from inspector.tuning.search import query_embedding, record_model  # (the engine: torch)

        inspector = self.handle.inspector
        if inspector is None:
            msg = "the line has not been started"
            raise RuntimeError(msg)
        return query_embedding(inspector, query), record_model(inspector)


class HistoryView(QWidget):
    """``loaded`` after each (re)load, ``searched`` after each search (rows shown, best first).

    ``queries``: the encoder of text / image-file searches (default: the station engine of ``source``);
    ``feedback``: show the operator's "was this verdict right?" bar (not in the read-only viewer);
    ``image_search``: offer "like an image file" (it needs the line's ROI: the station's engine).
    """

    loaded = Signal()
    searched = Signal(object)

    def __init__(self, source: LogSource | StationHandle, notify: Callable[[str, str], None],
                 parent: QWidget | None = None, *, queries: QueryModel | None = None, feedback: bool = True,
                 image_search: bool = True) -> None:
        super().__init__(parent)
        self.handle = source
        self.notify = notify
        self.queries: QueryModel = queries if queries is not None else EngineQueries(source)  # type: ignore[arg-type]
        self.browser: Browser | None = None
        self.page: Page | None = None
        self._loaded = False
        self._worker: TaskWorker | None = None
        self.search_result = None
        self.search_label = ""
        self.shown_id: int | None = None

        now = QDateTime.currentDateTime()
        self.start = QDateTimeEdit(now.addDays(-7))
        self.end = QDateTimeEdit(now.addDays(1))
        for w in (self.start, self.end):
            w.setCalendarPopup(True)
            w.setDisplayFormat("yyyy-MM-dd HH:mm")
            w.dateTimeChanged.connect(lambda _d: self.apply_filters())
        self.verdict = QComboBox()
        self.verdict.addItems([ALL, "OK", "NG", "FAULT"])
        self.line = QComboBox()
        self.defect = QComboBox()
        for combo in (self.verdict, self.line, self.defect):
            combo.currentIndexChanged.connect(lambda _i: self.apply_filters())
        self.reload_button = QPushButton("⟳ Reload")
        self.reload_button.clicked.connect(self.reload)
        self.export_button = QPushButton("Export CSV …")
        self.export_button.clicked.connect(self.export_dialog)
        filters = QHBoxLayout()
        for label, w in (("From", self.start), ("To", self.end), ("Verdict", self.verdict), ("Line", self.line),
                         ("Defect", self.defect)):
            cap = QLabel(label)
            cap.setObjectName("caption")
            filters.addWidget(cap)
            filters.addWidget(w)
        filters.addStretch(1)
        filters.addWidget(self.reload_button)
        filters.addWidget(self.export_button)

        self.query = QLineEdit()
        self.query.setPlaceholderText("search with CLIP: describe what you look for, e.g. scratch near the hole")
        self.query.returnPressed.connect(self.search_text)
        self.text_button = QPushButton("Search text")
        self.text_button.setObjectName("primary")
        self.text_button.clicked.connect(self.search_text)
        self.like_button = QPushButton("Parts like the selected one")
        self.like_button.clicked.connect(self.search_like_selected)
        self.file_button = QPushButton("Like an image file …")
        self.file_button.clicked.connect(self.search_file_dialog)
        self.clear_button = QPushButton("Clear search")
        self.clear_button.clicked.connect(self.clear_search)
        search = QHBoxLayout()
        search.addWidget(self.query, 1)
        for b in (self.text_button, self.like_button, self.file_button, self.clear_button):
            search.addWidget(b)

        self.model = RecordModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.selectionModel().currentRowChanged.connect(lambda cur, _prev: self.show_row(cur.row()))
        self.summary = QLabel("")
        self.summary.setObjectName("hint")
        left = QWidget()
        l_lay = QVBoxLayout(left)
        l_lay.setContentsMargins(0, 0, 0, 0)
        l_lay.addWidget(self.table, 1)
        l_lay.addWidget(self.summary)

        self.view = FrameView("select a record")
        self.detail = QLabel("")
        self.detail.setWordWrap(True)
        self.detail.setTextFormat(Qt.TextFormat.RichText)
        right = QGroupBox("RECORD")
        r_lay = QVBoxLayout(right)
        self.feedback = FeedbackBar()  # the operator's word on a logged part (issue #17 item 8)
        r_lay.addWidget(self.view, 3)
        r_lay.addWidget(self.detail, 1)
        r_lay.addWidget(self.feedback)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([1100, 760])

        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 12, 12, 12)
        lay.addLayout(filters)
        lay.addLayout(search)
        lay.addWidget(split, 1)
        for widget, wanted in ((self.feedback, feedback), (self.file_button, image_search)):
            if not wanted:
                widget.hide()  # (explicitly hidden: showing the view does not show it)

    # ------------------------------------------------------------------ loading
    def ensure_loaded(self) -> None:
        if not self._loaded:
            self.reload()

    def reload(self) -> None:
        if self._worker is not None:
            return
        folder = self.handle.log_dir
        self.summary.setText(f"reading {folder} ...")
        old, self.browser = self.browser, None
        if old is not None:
            old.close()

        def work() -> tuple[Browser, Page]:
            browser = Browser(folder)  # builds / catches up the index when no station holds the folder
            return browser, browser.first(HistoryFilter(), with_choices=True)

        self._worker = run_task(work, name="history-load", on_done=self._loaded_history, on_error=self._failed)

    def _loaded_history(self, result: tuple[Browser, Page]) -> None:
        self._worker = None
        self._loaded = True
        self.browser, page = result
        for combo, key in ((self.line, "line"), (self.defect, "defect")):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([ALL, *page.values.get(key, [])])
            combo.setCurrentText(current or ALL)
            combo.blockSignals(False)
        if page.span_ns is not None:  # the time filter starts at the oldest record and ends after the newest
            first, last = (t // 10**9 for t in page.span_ns)
            for w, secs in ((self.start, first - 60), (self.end, last + 3600)):
                w.blockSignals(True)
                w.setDateTime(QDateTime.fromSecsSinceEpoch(secs))
                w.blockSignals(False)
        self.search_result = None
        self.apply_filters()
        self.loaded.emit()

    def _failed(self, error: str) -> None:
        self._worker = None
        self.summary.setText(f"failed: {error}")
        self.notify(f"history: {error}", "error")

    # ------------------------------------------------------------------ filters
    def current_filter(self) -> HistoryFilter:
        start = dt.datetime.fromtimestamp(self.start.dateTime().toSecsSinceEpoch())
        end = dt.datetime.fromtimestamp(self.end.dateTime().toSecsSinceEpoch())
        return HistoryFilter(start, end, self.verdict.currentText() or ALL, self.line.currentText() or ALL,
                             self.defect.currentText() or ALL)

    def apply_filters(self) -> None:
        """Show the first page under the filter (one indexed query), or the search's matches within it."""
        browser = self.browser
        if browser is None:
            return
        flt = self.current_filter()
        if self.search_result is not None:
            q = to_query(flt)
            keep = [(row, s) for row, (_, s) in zip(self.search_result.rows, self.search_result.ranked, strict=True)
                    if matches(row.record, q)]
            self.model.set_rows([r for r, _ in keep], {int(r.record["id"]): s for r, s in keep})
            n = len(keep)
            ok = sum(r.verdict_class == "OK" for r, _ in keep)
            ng = sum(r.verdict_class == "NG" for r, _ in keep)
            total = browser.index.total()
        else:
            self.page = page = browser.first(flt)
            self.model.set_rows(page.rows, more=lambda after: browser.more(flt, after))
            ok, ng, n, total = page.counts["OK"], page.counts["NG"], sum(page.counts.values()), page.total
        self.summary.setText(f"{n} of {total} records · {ok} OK · {ng} NG · {n - ok - ng} not inspected"
                             + (f" · ranked by CLIP similarity to {self.search_label}"
                                if self.search_result is not None else ""))
        shown = self.shown_id
        if shown is not None and shown not in {int(r.record["id"]) for r in self.model.rows}:
            # The filter removed the record on the right: do not keep showing it as if it matched.
            self.shown_id = None
            self.feedback.set_part(None)
            self.detail.setText("")
            self.view.set_placeholder("select a record")

    def shown_rows(self) -> list[HistoryRow]:
        """The rows loaded into the table so far (a page at a time as it scrolls)."""
        return list(self.model.rows)

    # ------------------------------------------------------------------ detail
    def show_row(self, r: int) -> None:
        if r < 0 or r >= len(self.model.rows):
            return
        try:
            (row,) = full_records([self.model.row_at(r)])
            image, heat = record_media(row)
        except Exception as exc:
            self.view.set_placeholder(f"cannot read the record: {exc}")
            return
        rec = row.record
        self.shown_id = int(rec["id"])
        self.feedback.set_part(FeedbackPart(image, str(rec["part_id"]), row.verdict_class, rec.get("defect") or None,
                                            int(rec["seq"])))
        if image is None:
            self.view.set_placeholder("no image stored for this record (log.thumbnail_px / save_full_frames)")
        else:
            overlay, roi = None, None
            if heat is not None:
                x, y, w, h = rec["roi"]
                frame_w = max(x + w, 1)
                s = image.shape[1] / frame_w
                roi = (round(x * s), round(y * s), max(1, round(w * s)), max(1, round(h * s)))
                big = cv2.resize(heat, (roi[2], roi[3]), interpolation=cv2.INTER_LINEAR)
                overlay = heat_rgba(big, float(rec["threshold"]))
            self.view.set_frame(image, overlay, roi)
        colour = theme.VERDICT_COLOURS.get(row.verdict_class, theme.TEXT)
        ms = rec["ms"].get("total")
        self.detail.setText(
            f"<span style='color:{colour}; font-size:22pt; font-weight:bold'>{row.verdict_class}</span> "
            f"<span style='font-size:15pt'>{rec.get('defect') or ''}</span><br>"
            f"part <b>{rec['part_id']}</b> · seq {rec['seq']} · {rec['timestamp']}<br>"
            f"score {rec['score']:.4f} / threshold {rec['threshold']:.4f} · {rec['n_regions']} region(s)<br>"
            f"line {rec['line']} · model {rec['model']} {rec['model_version']} · "
            + (f"{ms:.0f} ms" if ms is not None else "")
            + (f"<br><span style='color:{theme.FAULT}'>{rec['fault']}</span>" if rec.get("fault") else "")
            + f"<br><span style='color:{theme.MUTED}'>{row.file.name} #{row.index}</span>")

    # ------------------------------------------------------------------ export
    def export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export CSV", str(Path.home() / "inspections.csv"),
                                              "CSV (*.csv)")
        if path:
            self.export(Path(path))

    def export(self, path: Path) -> int:
        """Write every row under the filter (or the search's matches), in display order, to CSV."""
        rows = self.shown_rows()
        while self.model.canFetchMore():
            self.model.fetchMore()
            rows = self.shown_rows()
        n = export_rows(full_records(rows), path)
        self.notify(f"exported {n} record(s) to {path}", "ok")
        return n

    # ------------------------------------------------------------------ CLIP search
    def search_text(self) -> None:
        text = self.query.text().strip()
        why = self.queries.unavailable("text")
        if not text or why is not None:
            self.notify(why or "type a description of what you look for", "warn")
            return
        self._search(lambda browser: self.queries.embed(text, browser), f"“{text}”", encoder=True)

    def search_like_selected(self) -> None:
        idx = self.table.currentIndex()
        if not idx.isValid():
            self.notify("select a record first", "warn")
            return
        row = self.model.row_at(idx.row())
        vec = embedding_of(row)
        if vec is None:
            self.notify("this record has no embedding (the part was not inspected)", "warn")
            return
        self.query.clear()  # the ranking is by this part now, not by the words in the box
        model = row.record.get("model")
        self._search(lambda _browser: (vec, model), f"parts like {row.record['part_id']}")

    def search_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Example image", str(Path.home()),
                                              "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff)")
        if path:
            self.search_image_file(Path(path))

    def search_image_file(self, path: Path) -> None:
        why = self.queries.unavailable("image")
        if why is not None:
            self.notify(why, "warn")
            return
        self.query.clear()  # the ranking is by this image now, not by the words in the box
        self._search(lambda browser: self.queries.embed(load_image(path), browser), f"parts like {path.name}",
                     encoder=True)

    def _search(self, query_fn: Callable[[Browser], tuple[np.ndarray, str | None]], label: str, *,
                encoder: bool = False) -> None:
        browser = self.browser
        if self._worker is not None or browser is None:
            return
        flt = HistoryFilter()  # the whole log; the view's filter applies to the matches

        def work() -> object:
            vec, model = query_fn(browser)
            return browser.similar(vec, flt, model)

        def done(result: object) -> None:
            self._worker = None
            self._searching(False)
            assert isinstance(result, Ranked)
            self.search_result = result
            self.search_label = label
            self.apply_filters()
            self.notify(f"search {label}: {len(self.model.rows)} match(es) shown", "ok")
            self.searched.emit(result)

        def failed(error: str) -> None:
            self._worker = None
            self._searching(False)
            self.summary.setText(f"search {label} failed: {error}")
            self.notify(f"search failed: {error}", "error")

        if encoder and not self.queries.ready():
            self.summary.setText(f"loading model … (once, for the first search by words or image), then searching "
                                 f"{label}")
        else:
            self.summary.setText(f"searching {label} ...")
        self._searching(True)
        self._worker = run_task(work, name="history-search", on_done=done, on_error=failed)

    def _searching(self, busy: bool) -> None:
        for button in (self.text_button, self.like_button, self.file_button):
            button.setEnabled(not busy)

    def clear_search(self) -> None:
        self.search_result = None
        self.apply_filters()

    def shutdown(self) -> None:
        if self._worker is not None:
            self._worker.wait(10_000)
        if self.browser is not None:
            self.browser.close()
            self.browser = None

