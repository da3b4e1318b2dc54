"""`python -m app.cli`: how `keybind dev` and the tests start keybind's own processes."""

from app.cli import main

main()
