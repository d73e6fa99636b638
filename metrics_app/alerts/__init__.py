"""Watching: alerts that name what broke (docs/alerts.md).

The journey of an alert, one module each:
- `signals`: what the evaluator reads, all from the rollups and the last window of failures;
- `usual`: what is normal for each source and scheduler, learned from its own hourly rollups;
- `verdicts`: comparing the window with the usual, naming what broke and saying why;
- `lifecycle`: pending → firing → resolved, stored with every transition;
- `notify`: the outbox of transitions, delivered to webhooks and email with retries;
- `evaluator`: the loop, elected through one row so it runs in exactly one process.
"""
