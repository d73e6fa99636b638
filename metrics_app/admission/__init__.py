"""Admission: the one way in. Who may make a request, judged from its head (`door`), the
checks of an ingest batch that need its body (`ingest`), and every way of saying no
(`refusals`); with the key and session copies they read (`keys`, `people`)."""
