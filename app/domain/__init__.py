"""keybind's rules, pure: no I/O, no framework. Everything else calls in; nothing here calls out."""
