"""Command-line programs; `bin/` and the console scripts are thin wrappers over their `main` functions."""
