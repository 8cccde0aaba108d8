"""Tests of the database schema, migrations, store and audit trail."""
