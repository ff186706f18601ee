"""The validator stage: checks a record against the contract and normalises it."""
