"""Analysis: measured metrics turned into verdicts that gate a rollout."""
