"""Thin entry points: parse the trigger (command line or Lambda event), call shared/, report."""
