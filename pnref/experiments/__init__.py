"""The paper's experiments, reproduced: what users run (top layer)."""
