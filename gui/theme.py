"""One look for every screen: dark panels, OK green / NG red / fault amber, type sized for 1 m.

The OK / NG colours are the overlay's (:mod:`inspector.decision.overlay`), so a verdict has the same colour in
the GUI, in ``inspector predict`` images and in exported reports.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

from inspector.decision.overlay import NG_RGB, OK_RGB

OK = "#{:02x}{:02x}{:02x}".format(*OK_RGB)
NG = "#{:02x}{:02x}{:02x}".format(*NG_RGB)
FAULT = "#f0a000"  # amber: not inspected, camera / link trouble, untrained backbone
IDLE = "#5b6573"  # grey: off, stopped, no part yet
INFO = "#3a8fd8"  # blue: selection, engineer accents

BG = "#15191e"
PANEL = "#1f252c"
PANEL_HI = "#29313a"
BORDER = "#343d48"
TEXT = "#e9edf1"
MUTED = "#9aa5b1"

VERDICT_COLOURS = {"OK": OK, "NG": NG, "FAULT": FAULT, "": IDLE}
LIGHT_COLOURS = {"ok": OK, "warn": FAULT, "fault": NG, "off": IDLE}

FONT_FAMILY = "DejaVu Sans"
BASE_PT = 12


def level_colour(level: str) -> str:
    """The text colour of a status message's level: info, ok, warn, error (unknown = info)."""
    return {"info": MUTED, "ok": OK, "warn": FAULT, "error": NG}.get(level, MUTED)


def qcolor(hex_colour: str, alpha: int = 255) -> QColor:
    c = QColor(hex_colour)
    c.setAlpha(alpha)
    return c


def font(pt: int, bold: bool = False) -> QFont:
    f = QFont(FONT_FAMILY, pt)
    f.setBold(bold)
    return f


STYLESHEET = f"""
QWidget {{ background: {BG}; color: {TEXT}; }}
QFrame#panel, QGroupBox {{ background: {PANEL}; border: 1px solid {BORDER}; border-radius: 8px; }}
QGroupBox {{ margin-top: 22px; padding: 10px 8px 8px 8px; font-weight: bold; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 12px; padding: 0 4px; color: {MUTED};
                    background: transparent; }}
QLabel {{ background: transparent; }}
QLabel#caption {{ color: {MUTED}; font-size: 10pt; letter-spacing: 1px; }}
QLabel#hint {{ color: {MUTED}; font-size: 10pt; }}
QLabel#title {{ font-size: 16pt; font-weight: bold; }}
QPushButton {{ background: {PANEL_HI}; border: 1px solid {BORDER}; border-radius: 6px; padding: 8px 16px;
               min-height: 28px; }}
QPushButton:hover {{ border-color: {INFO}; }}
QPushButton:pressed {{ background: {BORDER}; }}
QPushButton:disabled {{ color: #5d6670; border-color: #2a3038; }}
QPushButton:checked {{ background: {INFO}; border-color: {INFO}; color: white; }}
QPushButton#start {{ background: {OK}; border-color: {OK}; color: white; font-weight: bold; font-size: 15pt; }}
QPushButton#stop {{ background: #56606b; border-color: #6b7580; color: white; font-weight: bold; font-size: 15pt; }}
QPushButton#start:disabled, QPushButton#stop:disabled {{ background: {PANEL_HI}; border-color: {BORDER};
    color: #59636e; }}
QPushButton#danger {{ background: #5a2323; border-color: {NG}; }}
QPushButton#primary {{ background: {INFO}; border-color: {INFO}; color: white; font-weight: bold; }}
QPushButton#primary:disabled, QPushButton#danger:disabled {{ background: {PANEL_HI}; border-color: {BORDER};
    color: #59636e; }}
QPushButton#nav {{ background: transparent; border: none; border-bottom: 4px solid transparent; border-radius: 0;
                   font-size: 13pt; font-weight: bold; padding: 8px 10px; color: {MUTED}; }}
QPushButton#nav:checked {{ color: {TEXT}; border-bottom: 4px solid {INFO}; background: transparent; }}
QComboBox, QLineEdit, QPlainTextEdit, QSpinBox, QDoubleSpinBox, QDateTimeEdit {{
    background: {PANEL_HI}; border: 1px solid {BORDER}; border-radius: 6px; padding: 6px 8px; }}
QComboBox, QLineEdit, QSpinBox, QDoubleSpinBox, QDateTimeEdit {{ min-height: 40px; padding-top: 0; padding-bottom: 0; }}
QCheckBox {{ min-height: 40px; }}
QComboBox#line {{ font-size: 14pt; font-weight: bold; }}
QComboBox QAbstractItemView {{ background: {PANEL_HI}; selection-background-color: {INFO}; }}
QTableView, QTableWidget, QListWidget {{ background: {PANEL}; border: 1px solid {BORDER}; border-radius: 6px;
    gridline-color: {BORDER}; selection-background-color: {INFO}; alternate-background-color: #232a32; }}
QHeaderView::section {{ background: {PANEL_HI}; color: {MUTED}; border: none; border-right: 1px solid {BORDER};
    padding: 6px; font-weight: bold; }}
QTabWidget::pane {{ border: none; }}
QTabBar::tab {{ background: transparent; color: {MUTED}; padding: 10px 20px; font-size: 13pt; font-weight: bold;
                border-bottom: 3px solid transparent; }}
QTabBar::tab:selected {{ color: {TEXT}; border-bottom: 3px solid {INFO}; }}
QProgressBar {{ background: {PANEL_HI}; border: 1px solid {BORDER}; border-radius: 6px; text-align: center;
                min-height: 26px; font-weight: bold; }}
QProgressBar::chunk {{ background: {INFO}; border-radius: 5px; }}
QSlider::groove:horizontal {{ height: 10px; background: {PANEL_HI}; border-radius: 5px; }}
QSlider::handle:horizontal {{ background: {TEXT}; width: 26px; margin: -9px 0; border-radius: 13px; }}
QCheckBox {{ spacing: 8px; background: transparent; }}
QCheckBox::indicator {{ width: 22px; height: 22px; }}
QScrollBar:vertical {{ background: {PANEL}; width: 12px; }}
QScrollBar::handle:vertical {{ background: {BORDER}; border-radius: 6px; min-height: 30px; }}
QToolTip {{ background: {PANEL_HI}; color: {TEXT}; border: 1px solid {BORDER}; }}
"""


def apply(app: QApplication) -> None:
    """Install the station style on the application."""
    app.setStyle("Fusion")
    pal = QPalette()
    for role, colour in ((QPalette.ColorRole.Window, BG), (QPalette.ColorRole.Base, PANEL),
                         (QPalette.ColorRole.Text, TEXT), (QPalette.ColorRole.WindowText, TEXT),
                         (QPalette.ColorRole.Button, PANEL_HI), (QPalette.ColorRole.ButtonText, TEXT),
                         (QPalette.ColorRole.Highlight, INFO)):
        pal.setColor(role, QColor(colour))
    app.setPalette(pal)
    app.setFont(font(BASE_PT))
    app.setStyleSheet(STYLESHEET)
