"""The processor stage: stores each record exactly once and counts it once."""
