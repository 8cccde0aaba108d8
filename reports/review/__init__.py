"""The sign-off web app: cardiologists read the ECG and the draft, then sign, amend or reject.

    security.py   passwords, session and CSRF tokens, lock-out rules (pure functions)
    accounts.py   the users and web_sessions tables: add/disable accounts, login, sessions
    config.py     ReviewConfig (built from worker.settings at the edge), the site's critical labels
    queue.py      what the queue shows: urgency order, counts, filters, keyset paging
    signoff.py    sign / amend / reject: a new report version, its HL7 message, audit, outbox
    app.py        the FastAPI routes and server-rendered pages (templates/); see README.md
"""
