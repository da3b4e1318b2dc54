"""keybind's own error codes: failures that are not a cloud's answer. Each cloud's error table
(app/providers/<cloud>/errors.py) lists them too, with their class."""

from __future__ import annotations

ACCOUNT_MISCONFIGURED = "keybind.AccountMisconfigured"
CANCELLED = "keybind.Cancelled"
NO_REASON = "keybind.NoReason"
VERIFY_TIMEOUT = "keybind.VerifyTimeout"
WORKER_LOST = "keybind.WorkerLost"
