"""JD Cloud VM regions keybind accepts, and the shape of JD instance IDs (reference B7)."""

import re

# North China (Beijing), South China (Guangzhou), East China (Suqian), East China (Shanghai).
REGIONS: frozenset[str] = frozenset({"cn-north-1", "cn-south-1", "cn-east-1", "cn-east-2"})
INSTANCE_ID = re.compile(r"^i-[0-9a-z]{10}$")
# Key names keybind accepts: letters, digits, `_` and `-`, at most 32 characters. JD's console
# also allows Chinese characters; keybind keeps names URL-safe since they go in the path.
KEY_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
