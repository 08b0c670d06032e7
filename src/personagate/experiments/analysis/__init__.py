"""What a run found, from its store alone (never torch or the model): rates, verdicts, exports."""
