"""Credentials the embedded simulator accepts when none are configured: `keybind dev` only."""

from __future__ import annotations

DEV_SECRET_ID = "AKIDkeybindDEVkeybindDEVkeybindDEV"
DEV_SECRET_KEY = "keybindDEVsecretKEYkeybindDEVsecret"
DEV_JD_ACCESS_KEY = "JDCkeybindDEVaccessKEYkeybindDEV00"
DEV_JD_SECRET_KEY = "keybindDEVjdSECRETkeybindDEVjd0000"
