"""The three screens: operator (live verdicts), engineer (behind a PIN), history (audit log)."""
