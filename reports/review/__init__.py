"""The sign-off web app: cardiologists read the ECG and the draft, then sign, amend or reject.

    security.py   passwords, sessions, CSRF, lock-out (pure functions + the two tables)
    queue.py      what the queue shows: urgency order, counts, filters, paging
    signoff.py    sign / amend / reject: a new report version, its HL7 message, audit, outbox
    app.py        the FastAPI routes and server-rendered pages (templates/)
"""
