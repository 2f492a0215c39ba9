"""PySide6 operator and engineer GUI: observes and commands the core (`inspector`) through its public API."""
