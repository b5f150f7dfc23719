"""scripts/gpu_check.py in pieces, one module per part (the script holds the command line)."""
