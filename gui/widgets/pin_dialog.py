"""Engineer login (name + PIN on a touch keypad) and first-time PIN setup."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gui import theme
from gui.pin import PinCheck, PinError, PinStore, check_pin_format


class _Keypad(QWidget):
    def __init__(self, target: Callable[[], QLineEdit], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setSpacing(8)
        keys = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "⌫", "0", "C"]
        for i, key in enumerate(keys):
            b = QPushButton(key)
            b.setFixedSize(84, 64)
            b.setFont(theme.font(20, bold=True))
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.clicked.connect(lambda _=False, k=key: self._press(target(), k))
            grid.addWidget(b, i // 3, i % 3)

    @staticmethod
    def _press(edit: QLineEdit, key: str) -> None:
        if key == "⌫":
            edit.backspace()
        elif key == "C":
            edit.clear()
        else:
            edit.insert(key)


def _pin_edit() -> QLineEdit:
    edit = QLineEdit()
    edit.setEchoMode(QLineEdit.EchoMode.Password)
    edit.setMaxLength(12)
    edit.setFont(theme.font(22, bold=True))
    edit.setAlignment(Qt.AlignmentFlag.AlignCenter)
    edit.setPlaceholderText("PIN")
    return edit


class LoginDialog(QDialog):
    """Asks for the engineer's name and PIN; ``check`` is called with the PIN and returns a PinCheck.

    On success ``who`` holds the name. Failures and lockouts are shown in the dialog (and logged by
    the caller's ``check``); a locked store refuses every PIN until the lockout ends.
    """

    def __init__(self, check: Callable[[str, str], PinCheck], last_name: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Engineer login")
        self.setModal(True)
        self._check = check
        self.who = ""
        title = QLabel("Engineer mode")
        title.setObjectName("title")
        self.name = QLineEdit(last_name)
        self.name.setPlaceholderText("your name (recorded with every change)")
        self.pin = _pin_edit()
        self.pin.returnPressed.connect(self.try_login)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setMinimumHeight(48)
        self.login_button = QPushButton("Log in")
        self.login_button.setObjectName("primary")
        self.login_button.clicked.connect(self.try_login)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(cancel)
        buttons.addStretch(1)
        buttons.addWidget(self.login_button)
        lay = QVBoxLayout(self)
        lay.addWidget(title)
        lay.addWidget(self.name)
        lay.addWidget(self.pin)
        self.keypad = _Keypad(lambda: self.pin)
        lay.addWidget(self.keypad, 0, Qt.AlignmentFlag.AlignHCenter)
        lay.addWidget(self.message)
        lay.addLayout(buttons)

    def try_login(self) -> PinCheck | None:
        name = self.name.text().strip()
        if not name:
            self._say("Enter your name: every engineer change is recorded with it.", theme.FAULT)
            return None
        result = self._check(name, self.pin.text())
        self.pin.clear()
        if result.ok:
            self.who = name
            self.accept()
        elif result.locked:
            minutes = max(1, round(result.locked_for_s / 60))
            self._say(f"Too many wrong PINs: engineer mode is locked for {minutes} min.", theme.NG)
        else:
            self._say(f"Wrong PIN. {result.attempts_left} attempt(s) left before a lockout.", theme.FAULT)
        return result

    def _say(self, text: str, colour: str) -> None:
        self.message.setText(text)
        self.message.setStyleSheet(f"color: {colour}; font-weight: bold;")


class SetPinDialog(QDialog):
    """First-time (commissioning) PIN setup: the PIN twice; only its scrypt hash is stored."""

    def __init__(self, store: PinStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Set the engineer PIN")
        self.store = store
        self.who = ""
        info = QLabel("No engineer PIN is set for this station yet. Choose one (4-12 digits); "
                      "only a salted scrypt hash is stored, in:\n" + str(store.path))
        info.setWordWrap(True)
        self.name = QLineEdit()
        self.name.setPlaceholderText("your name")
        self.pin = _pin_edit()
        self.again = _pin_edit()
        self.again.setPlaceholderText("PIN again")
        # The keypad types into the PIN field last touched: a touch-only panel can be commissioned.
        self._target = self.pin
        for edit in (self.pin, self.again):
            edit.installEventFilter(self)
        self.keypad = _Keypad(lambda: self._target)
        self.message = QLabel("")
        ok = QPushButton("Set PIN")
        ok.setObjectName("primary")
        ok.clicked.connect(self.try_set)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(cancel)
        row.addStretch(1)
        row.addWidget(ok)
        lay = QVBoxLayout(self)
        for w in (info, self.name, self.pin, self.again):
            lay.addWidget(w)
        lay.addWidget(self.keypad, 0, Qt.AlignmentFlag.AlignHCenter)
        lay.addWidget(self.message)
        lay.addLayout(row)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in (QEvent.Type.FocusIn, QEvent.Type.MouseButtonPress) and watched in (self.pin, self.again):
            self._target = watched  # type: ignore[assignment]
        return super().eventFilter(watched, event)

    def try_set(self) -> bool:
        name, pin = self.name.text().strip(), self.pin.text()
        try:
            if not name:
                raise PinError("enter your name")
            check_pin_format(pin)
            if pin != self.again.text():
                raise PinError("the two PINs differ")
        except PinError as exc:
            self.message.setText(str(exc))
            self.message.setStyleSheet(f"color: {theme.FAULT}; font-weight: bold;")
            return False
        self.store.set_pin(pin)
        self.who = name
        self.accept()
        return True
