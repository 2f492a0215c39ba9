"""Touch-only panels (issue #17 item 11): the PIN is set and entered on the on-screen keypad, the login is not
pre-filled with the previous engineer. (Control sizes >= 40 px are checked for every view in test_fit.py.)"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from gui.pin import PinStore
from gui.widgets.pin_dialog import LoginDialog, SetPinDialog
from tests.gui.conftest import PIN, login


def _tap(qtbot, keypad, digits: str) -> None:
    keys = {b.text(): b for b in keypad.findChildren(QPushButton)}
    for d in digits:
        qtbot.mouseClick(keys[d], Qt.MouseButton.LeftButton)


def test_pin_is_set_on_the_keypad(qtbot, tmp_path):
    store = PinStore(tmp_path / "pin.json")
    dialog = SetPinDialog(store)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.name.setText("Dana")
    _tap(qtbot, dialog.keypad, "1357")
    qtbot.mouseClick(dialog.again, Qt.MouseButton.LeftButton)  # touch the second field: the keypad follows
    _tap(qtbot, dialog.keypad, "1357")
    assert dialog.pin.text() == "1357" and dialog.again.text() == "1357"
    assert dialog.try_set() and store.verify("1357").ok
    assert all(b.height() >= 40 and b.width() >= 40 for b in dialog.keypad.findChildren(QPushButton))


def test_login_is_not_prefilled_with_the_last_engineer(idle_window, qtbot, monkeypatch):
    win = idle_window
    login(win)
    win.session.logout()
    seen: list[str] = []

    def fake_exec(dialog: LoginDialog) -> int:
        seen.append(dialog.name.text())
        assert dialog.keypad.isVisibleTo(dialog)
        return LoginDialog.DialogCode.Rejected

    monkeypatch.setattr(LoginDialog, "exec", fake_exec)
    assert not win.login()
    assert seen == [""] and win.session.last_name == "Dana"
    assert win.session.check("Dana", PIN).ok  # the keypad's PIN still logs in
