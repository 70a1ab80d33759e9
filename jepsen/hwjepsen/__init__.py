"""Headwater's fault harness: see jepsen/README.md."""
