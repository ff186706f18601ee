"""Command-line tools that read the synthesized stack: summary, cost report, right-sizing."""
